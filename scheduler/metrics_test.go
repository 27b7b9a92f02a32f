package scheduler

import (
	"context"

	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value is a counter's value.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func newMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// The schedule's entries have every series at zero from the start, and so
// do the handlers' actions; a second Metrics on the same registry is a
// clear error.
func TestSchedulerMetricsExistFromStart(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	New(nil, mustParse(t, resetAllYAML), WithMetrics(m))
	// entry "nightly": 4 firing results and its errors; 2 actions x 2 results
	mfs, err := reg.Gather()
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	if err != nil || n != 4+1+4 {
		t.Errorf("%d series (%v), want 9", n, err)
	}
	for _, r := range firingResults {
		if v := value(m.firings.WithLabelValues("nightly", r)); v != 0 {
			t.Errorf("firings %s = %v, want 0", r, v)
		}
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Error("a second Metrics on the same registry: no error")
	}
}

// Two replicas fire the same firing: one counts it enqueued, the other
// already enqueued.
func TestFiringsAreCounted(t *testing.T) {
	t.Parallel()
	env := newAsynqEnv(t)
	s := mustParse(t, resetAllYAML)
	m, _ := newMetrics(t)
	fire := mustTime(t, "2026-03-01T00:00:00Z")
	for range 2 {
		sc := New(env.client(t), s, WithQueue(env.queue), WithMetrics(m), WithClock(newFakeClock(fire)))
		sc.fire(context.Background(), s.Entries[0], fire)
		waitDone(t, sc.Stop())
	}
	for r, want := range map[string]float64{"enqueued": 1, "already_enqueued": 1, "skipped": 0, "failed": 0} {
		if v := value(m.firings.WithLabelValues("nightly", r)); v != want {
			t.Errorf("firings %s = %v, want %v", r, v, want)
		}
	}
}

// The handlers count each quota task done or failed, by action.
func TestActionsAreCounted(t *testing.T) {
	t.Parallel()
	m, _ := newMetrics(t)
	b := setupHandlers(t)
	mux := asynq.NewServeMux()
	RegisterHandlers(mux, b.l, WithMetrics(m))
	task, _ := entryTask(t, resetAllYAML, time.Now())
	ctx := context.Background()
	for i, tk := range []*asynq.Task{task, asynq.NewTask(TypeQuotaReset, []byte("not json")), asynq.NewTask(TypeQuotaAdjust, []byte("{"))} {
		if err := mux.ProcessTask(ctx, tk); (err != nil) != (i > 0) {
			t.Fatalf("task %d: %v", i, err)
		}
	}
	for _, c := range []struct {
		action, result string
		want           float64
	}{{ActionReset, "done", 1}, {ActionReset, "failed", 1}, {ActionAdjust, "done", 0}, {ActionAdjust, "failed", 1}} {
		if v := value(m.actions.WithLabelValues(c.action, c.result)); v != c.want {
			t.Errorf("%s %s = %v, want %v", c.action, c.result, v, c.want)
		}
	}
}
