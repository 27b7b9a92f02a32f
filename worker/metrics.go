package worker

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a Throttler's Prometheus metrics. Every series has a "type"
// label (the task type) and, when made with perTenant, a "tenant" label:
// one series per tenant, so only when the number of tenants is bounded. The
// type label is bounded: the first DefaultMaxTypes task types seen (MaxTypes
// changes it) keep their name, later ones are counted under OtherType, so a
// producer that makes up task types cannot grow the series without end.
//
//	quotaq_worker_allowed_total{type,[tenant],via}   tasks let through: via "now" (including on tokens booked when put back) or "fail_open"
//	quotaq_worker_throttled_total{type,[tenant],reason}  dequeues not let start at once, by cause: reason "rate", "quota", "paused", "upstream", "concurrency", "unavailable" (Redis), "invalid" (a policy that cannot be enforced); each then waited in the worker and ran, or was put back
//	quotaq_worker_requeued_total{type,[tenant]}      of those, the dequeues that did not run: the task went back to its queue (not a failure)
//	quotaq_worker_waited_in_process_total{type,[tenant]}  of those, the dequeues that waited in the worker for their slot (within WithWaitInProcess), then ran
//	quotaq_worker_rethrottled_total{type,[tenant]}   dequeues of a task that had been put back, only to be put back again: the waste to keep near 0
//	quotaq_worker_upstream_retry_after_total{type,[tenant]}  handlers that returned RetryAfter (upstream 429/503)
//	quotaq_worker_upstream_retry_after_capped_total{type}  of those, delays cut to WithMaxRetryAfter
//	quotaq_worker_archived_total{type,reason}        tasks archived by the Throttler: reason "max_wait", "invalid_tenant", "no_tenant", "cost_above_burst", "invalid_cost", "invalid", "unknown_upstream"
//	quotaq_worker_errors_total{type,op}              failed calls: op "limiter", "requeue", "hold"
//	quotaq_worker_throttle_delay_seconds{type}       delay given to each re-queued task
//	quotaq_worker_slots_held{type,[tenant]}          tasks running now that hold a concurrency slot
//	quotaq_worker_decision_seconds{type}             how long the limiter took to decide on a dequeued task
//	quotaq_worker_throttle_wait_seconds{type}        from a task's ReadyHeader to the start of its first run
//	quotaq_worker_shadow_mode                        1 while the Throttler runs in shadow mode (WithShadow): it enforces nothing
//	quotaq_worker_shadow_throttled_total{type,[tenant],reason}  in shadow mode, tasks that ran but that enforcing would not have let start at once: reason as throttled_total's
//	quotaq_worker_shadow_archived_total{type,reason}  in shadow mode, tasks that ran but that enforcing would have archived: reason as archived_total's, but for "max_wait" (not predicted)
//	quotaq_worker_shadow_holds_skipped_total{type,[tenant]}  in shadow mode, tenant holds not applied: its upstream said 429/503 (RetryAfter) or that its budget is spent (UpstreamSpent)
//	quotaq_redis_errors_total{kind}                  Redis calls that failed for want of a usable server (RedisHook): kind "connection" or "server"
//	quotaq_build_info{version,asynq,goversion}       1: what the worker was built with
//
// Series are there from the start, at zero, for the task types given to
// KnownTypes (without the per-tenant label: a tenant's series appear with
// its first task), and for every label value listed above.
type Metrics struct {
	perTenant        bool
	types            typeLabels
	allowed          *prometheus.CounterVec
	throttled        *prometheus.CounterVec
	requeued         *prometheus.CounterVec
	rethrottled      *prometheus.CounterVec
	retryAfter       *prometheus.CounterVec
	retryAfterCapped *prometheus.CounterVec
	waited           *prometheus.CounterVec
	archived         *prometheus.CounterVec
	errors           *prometheus.CounterVec
	delay            *prometheus.HistogramVec
	slots            *prometheus.GaugeVec
	decision         *prometheus.HistogramVec
	wait             *prometheus.HistogramVec
	redisErrors      *prometheus.CounterVec
	build            *prometheus.GaugeVec
	shadowMode       prometheus.Gauge
	shadowThrottled  *prometheus.CounterVec
	shadowArchived   *prometheus.CounterVec
	shadowHolds      *prometheus.CounterVec
	known            []string // KnownTypes
}

// Label values, each metric's bounded set: series are made for each at the
// start (see KnownTypes).
var (
	allowedVia      = []string{"now", "fail_open"}
	throttleReasons = []string{"rate", "quota", "paused", "upstream", "concurrency", "unavailable", "invalid"}
	archiveReasons  = []string{"max_wait", "invalid_tenant", "no_tenant", "cost_above_burst", "invalid_cost", "invalid", "unknown_upstream"}
	// shadow mode does not predict archives for the max wait: a task's wait
	// depends on the bookings before it, which shadow mode does not make
	shadowArchiveReasons = archiveReasons[1:]
	errorOps             = []string{"limiter", "requeue", "hold"}
)

// DefaultMaxTypes is how many distinct task types get their own "type" label
// value unless MaxTypes says otherwise.
const DefaultMaxTypes = 100

// OtherType is the "type" label value of the task types seen after the first
// MaxTypes.
const OtherType = "other"

// MetricsOption configures Metrics.
type MetricsOption func(*Metrics)

// MaxTypes sets how many distinct task types get their own "type" label
// value; the types seen after them are counted under OtherType. n < 0: no
// cap, only for a program that knows its task types are few. Default
// DefaultMaxTypes.
func MaxTypes(n int) MetricsOption {
	return func(m *Metrics) { m.types.max = n }
}

// KnownTypes makes every series of the given task types (those the program
// handles) at zero from the start, so that dashboards and alerts see them
// before the first task; without the per-tenant label only, as tenants are
// not known in advance. They count towards MaxTypes first. Default: none.
func KnownTypes(types ...string) MetricsOption {
	return func(m *Metrics) { m.known = append(m.known, types...) }
}

// NewMetrics makes a Throttler's metrics and registers them with reg.
// perTenant adds a "tenant" label to the per-task counters.
func NewMetrics(reg prometheus.Registerer, perTenant bool, opts ...MetricsOption) (*Metrics, error) {
	who := []string{"type"}
	if perTenant {
		who = append(who, "tenant")
	}
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "quotaq", Subsystem: "worker", Name: name, Help: help},
			append(append([]string(nil), who...), extra...))
	}
	m := &Metrics{
		perTenant:   perTenant,
		types:       typeLabels{max: DefaultMaxTypes},
		allowed:     counter("allowed_total", "Tasks the throttle let through.", "via"),
		throttled:   counter("throttled_total", "Dequeues the throttle did not let start at once, by cause (then waited in the worker, or put back).", "reason"),
		requeued:    counter("requeued_total", "Dequeues that did not run: the task went back to its queue (not a failure)."),
		rethrottled: counter("rethrottled_total", "Dequeues of a task that had been put back, only to be throttled again."),
		retryAfter:  counter("upstream_retry_after_total", "Handlers that returned RetryAfter (upstream 429 or 503)."),
		waited:      counter("waited_in_process_total", "Dequeues that waited in the worker for their slot, then ran (instead of being put back)."),
		retryAfterCapped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "quotaq", Subsystem: "worker", Name: "upstream_retry_after_capped_total",
			Help: "Upstream Retry-After delays cut to the most allowed (WithMaxRetryAfter)."}, []string{"type"}),
		archived: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "quotaq", Subsystem: "worker", Name: "archived_total",
			Help: "Tasks the throttle archived (bad tenant, over the max wait, ...)."}, []string{"type", "reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "quotaq", Subsystem: "worker", Name: "errors_total",
			Help: "Limiter or Redis calls of the throttle that failed."}, []string{"type", "op"}),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "quotaq", Subsystem: "worker", Name: "throttle_delay_seconds",
			Help:    "Delay given to each re-queued task.",
			Buckets: []float64{0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 86400}}, []string{"type"}),
		slots: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "quotaq", Subsystem: "worker", Name: "slots_held",
			Help: "Tasks running now in this worker that hold a concurrency slot (a tenant's or an upstream's Concurrency limit)."}, who),
		decision: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "quotaq", Subsystem: "worker", Name: "decision_seconds",
			Help:    "How long the limiter took to decide on a dequeued task (a local lease: microseconds; Redis: a round trip).",
			Buckets: []float64{0.00001, 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1}}, []string{"type"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "quotaq", Subsystem: "worker", Name: "throttle_wait_seconds",
			Help:    "From when a task was ready to run (its " + ReadyHeader + " header) to the start of its first run: the wait the throttle and the queue added.",
			Buckets: []float64{0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400, 86400}}, []string{"type"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "quotaq", Name: "redis_errors_total",
			Help: "Redis calls of the worker (asynq's included) that failed for want of a usable server: kind \"connection\" (refused, broken, timed out) or \"server\" (OOM, READONLY, LOADING, ...)."}, []string{"kind"}),
		build: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "quotaq", Name: "build_info",
			Help: "Always 1: the quotaq, asynq and Go versions this worker was built with."}, []string{"version", "asynq", "goversion"}),
		shadowMode: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "quotaq", Subsystem: "worker", Name: "shadow_mode",
			Help: "1 while the throttle runs in shadow mode: it counts what it would throttle and runs every task."}),
		shadowThrottled: counter("shadow_throttled_total", "In shadow mode, tasks that ran but that enforcing would not have let start at once, by cause.", "reason"),
		shadowArchived: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "quotaq", Subsystem: "worker", Name: "shadow_archived_total",
			Help: "In shadow mode, tasks that ran but that enforcing would have archived (bad tenant, cost above the burst, ...)."}, []string{"type", "reason"}),
		shadowHolds: counter("shadow_holds_skipped_total", "In shadow mode, tenant holds not applied: the upstream said 429/503 or that its budget is spent."),
	}
	for _, o := range opts {
		o(m)
	}
	for _, c := range []prometheus.Collector{m.allowed, m.throttled, m.requeued, m.rethrottled, m.retryAfter, m.retryAfterCapped, m.waited, m.archived, m.errors, m.delay, m.slots, m.decision, m.wait, m.redisErrors, m.build,
		m.shadowMode, m.shadowThrottled, m.shadowArchived, m.shadowHolds} {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			if errors.As(err, &dup) {
				return nil, fmt.Errorf("worker: metrics are already registered (make one Metrics per registry): %w", err)
			}
			return nil, fmt.Errorf("worker: register metrics: %w", err)
		}
	}
	m.build.WithLabelValues(buildVersions()).Set(1)
	for _, kind := range redisErrorKinds {
		m.redisErrors.WithLabelValues(kind)
	}
	for _, typ := range m.known {
		m.initType(m.typ(typ))
	}
	return m, nil
}

// initType makes the series of task type label typ, at zero.
func (m *Metrics) initType(typ string) {
	for _, reason := range archiveReasons {
		m.archived.WithLabelValues(typ, reason)
	}
	for _, reason := range shadowArchiveReasons {
		m.shadowArchived.WithLabelValues(typ, reason)
	}
	for _, op := range errorOps {
		m.errors.WithLabelValues(typ, op)
	}
	m.retryAfterCapped.WithLabelValues(typ)
	m.delay.WithLabelValues(typ)
	m.decision.WithLabelValues(typ)
	m.wait.WithLabelValues(typ)
	if m.perTenant {
		return // a tenant's series appear with its first task
	}
	for _, via := range allowedVia {
		m.allowed.WithLabelValues(typ, via)
	}
	for _, reason := range throttleReasons {
		m.throttled.WithLabelValues(typ, reason)
		m.shadowThrottled.WithLabelValues(typ, reason)
	}
	for _, c := range []*prometheus.CounterVec{m.requeued, m.rethrottled, m.retryAfter, m.waited, m.shadowHolds} {
		c.WithLabelValues(typ)
	}
	m.slots.WithLabelValues(typ)
}

// buildVersions returns the quotaq (main module), asynq and Go versions of
// the running program, "unknown" where the build does not say.
func buildVersions() (quotaq, asynqVersion, goVersion string) {
	quotaq, asynqVersion, goVersion = "unknown", "unknown", runtime.Version()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if v := bi.Main.Version; v != "" {
		quotaq = v
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/quotaq/quotaq" && d.Version != "" {
			quotaq = d.Version // a program that uses quotaq as a library
		}
		if d.Path == "github.com/hibiken/asynq" {
			asynqVersion = d.Version
		}
	}
	return
}

func (m *Metrics) labels(taskType, tenant string, extra ...string) []string {
	l := []string{m.typ(taskType)}
	if m.perTenant {
		l = append(l, tenant)
	}
	return append(l, extra...)
}

// typ is the "type" label value of taskType.
func (m *Metrics) typ(taskType string) string { return m.types.label(taskType) }

// typeLabels maps task types to label values: the first max distinct types
// to themselves, the others to OtherType.
type typeLabels struct {
	max  int
	seen sync.Map // task type -> struct{}: the types with their own label
	mu   sync.Mutex
	n    int // len(seen), under mu
}

func (tl *typeLabels) label(t string) string {
	if tl.max < 0 {
		return t
	}
	if _, ok := tl.seen.Load(t); ok {
		return t
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if _, ok := tl.seen.Load(t); ok {
		return t
	}
	if tl.n >= tl.max {
		return OtherType
	}
	tl.seen.Store(t, struct{}{})
	tl.n++
	return t
}

// Stats are a Throttler's counts since it was made, over all task types and
// tenants. The names match Metrics.
type Stats struct {
	Allowed          int64 // tasks let through (now, on tokens booked when they were put back, or failing open)
	Throttled        int64 // dequeues not let start at once (limiter said wait, or upstream said 429): Requeued + WaitedInProcess
	Requeued         int64 // of those, the task put back in its queue: dequeues that did not run
	Rethrottled      int64 // dequeues of a task that had been put back, only to be throttled again
	RetryAfter       int64 // handlers that returned RetryAfter
	RetryAfterCapped int64 // of those, delays cut to WithMaxRetryAfter
	// WaitedInProcess counts, of the Throttled, the dequeues that waited in
	// the process for their slot (within WithWaitInProcess), then ran.
	WaitedInProcess int64
	Archived        int64 // tasks archived by the Throttler
	Errors          int64 // failed limiter or Redis calls
	// In shadow mode (WithShadow), the tasks that ran but that enforcing
	// would not have let start at once, or would have archived, and the
	// tenant holds not applied.
	ShadowThrottled, ShadowArchived, ShadowHoldsSkipped int64
}

type counters struct {
	allowed, throttled, requeued, rethrottled, retryAfter, retryAfterCapped, archived, errors, waitedInProcess atomic.Int64
	shadowThrottled, shadowArchived, shadowHoldsSkipped                                                        atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Allowed: c.allowed.Load(), Throttled: c.throttled.Load(),
		Requeued: c.requeued.Load(), Rethrottled: c.rethrottled.Load(), RetryAfter: c.retryAfter.Load(), RetryAfterCapped: c.retryAfterCapped.Load(),
		Archived: c.archived.Load(), Errors: c.errors.Load(), WaitedInProcess: c.waitedInProcess.Load(),
		ShadowThrottled: c.shadowThrottled.Load(), ShadowArchived: c.shadowArchived.Load(), ShadowHoldsSkipped: c.shadowHoldsSkipped.Load(),
	}
}
