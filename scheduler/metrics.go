package scheduler

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a Scheduler's and its handlers' Prometheus metrics:
//
//	quotaq_scheduler_firings_total{entry,result}     firings of each entry: result "enqueued" (by this replica), "already_enqueued" (by another replica), "skipped" (too late, past the entry's window), "failed" (given up after retries)
//	quotaq_scheduler_enqueue_errors_total{entry}     enqueue attempts that failed (each is retried until the firing is given up)
//	quotaq_scheduler_actions_total{action,result}    quota tasks handled: action "reset" or "adjust", result "done" or "failed"
//
// Entries are those of the schedule given to New, each with every result
// at zero from the start.
type Metrics struct {
	firings *prometheus.CounterVec
	errors  *prometheus.CounterVec
	actions *prometheus.CounterVec
}

var (
	firingResults = []string{"enqueued", "already_enqueued", "skipped", "failed"}
	actionResults = []string{"done", "failed"}
)

// NewMetrics makes the scheduler's metrics and registers them with reg.
// Pass them to New and RegisterHandlers with WithMetrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		firings: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "quotaq", Subsystem: "scheduler", Name: "firings_total",
			Help: "Firings of each schedule entry, by result: enqueued (by this replica), already_enqueued (by another), skipped (too late), failed (given up)."}, []string{"entry", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "quotaq", Subsystem: "scheduler", Name: "enqueue_errors_total",
			Help: "Enqueue attempts of a firing that failed (retried until the firing is given up)."}, []string{"entry"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "quotaq", Subsystem: "scheduler", Name: "actions_total",
			Help: "Quota tasks handled, by action (reset, adjust) and result (done, failed)."}, []string{"action", "result"}),
	}
	for _, c := range []prometheus.Collector{m.firings, m.errors, m.actions} {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			if errors.As(err, &dup) {
				return nil, fmt.Errorf("scheduler: metrics are already registered (make one Metrics per registry): %w", err)
			}
			return nil, fmt.Errorf("scheduler: register metrics: %w", err)
		}
	}
	for _, action := range []string{ActionReset, ActionAdjust} {
		for _, r := range actionResults {
			m.actions.WithLabelValues(action, r)
		}
	}
	return m, nil
}

// WithMetrics counts the Scheduler's firings and the handlers' actions in
// m. Default: none.
func WithMetrics(m *Metrics) Option {
	return func(c *config) { c.metrics = m }
}

// entries makes the series of the given entries, at zero; m may be nil.
func (m *Metrics) entries(es []Entry) {
	if m == nil {
		return
	}
	for _, e := range es {
		for _, r := range firingResults {
			m.firings.WithLabelValues(e.Name, r)
		}
		m.errors.WithLabelValues(e.Name)
	}
}

func (m *Metrics) fired(entry, result string) {
	if m != nil {
		m.firings.WithLabelValues(entry, result).Inc()
	}
}

func (m *Metrics) enqueueFailed(entry string) {
	if m != nil {
		m.errors.WithLabelValues(entry).Inc()
	}
}

func (m *Metrics) acted(action string, err error) {
	if m == nil {
		return
	}
	r := "done"
	if err != nil {
		r = "failed"
	}
	m.actions.WithLabelValues(action, r).Inc()
}
