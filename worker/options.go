package worker

import (
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// Defaults of a Throttler's options.
const (
	// DefaultUntenanted is the tenant id under which tasks without a tenant
	// are limited, unless WithUntenanted says otherwise.
	DefaultUntenanted = "_untenanted"
	// DefaultMinDelay is the shortest a re-queued task stays away.
	DefaultMinDelay = 250 * time.Millisecond
	// DefaultJitter caps the random delay added to each re-queue.
	DefaultJitter = 100 * time.Millisecond
	// DefaultErrorDelay is how long a task waits when the limiter cannot be
	// asked and fails closed.
	DefaultErrorDelay = time.Second
	// DefaultMaxTracked is how many re-queued tasks one Throttler wakes at
	// their exact due time; beyond that asynq's forwarder brings them back.
	DefaultMaxTracked = 100_000
	// DefaultMaxRetryAfter caps how long an upstream's Retry-After puts a
	// task back and holds its tenant.
	DefaultMaxRetryAfter = time.Hour
)

// Option configures a Throttler.
type Option func(*Throttler)

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(t *Throttler) { t.logger = l }
}

// WithMetrics makes the Throttler count its decisions in m. Default: no
// metrics (Stats still counts).
func WithMetrics(m *Metrics) Option {
	return func(t *Throttler) { t.metrics = m }
}

// WithTenantFunc sets how to find the tenant of a task that has neither a
// TenantHeader header nor a "tenant" field in a JSON object payload. fn
// reports false when it finds none. Default: none.
func WithTenantFunc(fn func(*asynq.Task) (string, bool)) Option {
	return func(t *Throttler) { t.tenantFunc = fn }
}

// WithUntenanted sets what happens to a task whose tenant cannot be found:
// it is limited as if its tenant were id (normally an id with no policy of
// its own, so the limiter's default policy applies to all such tasks
// together); with id "" it is refused: archived at once, with an error
// saying it has no tenant. Default DefaultUntenanted.
func WithUntenanted(id string) Option {
	return func(t *Throttler) { t.untenanted = id }
}

// WithExempt sets which tasks bypass the limiter entirely. Default: task
// types starting with "quotaq:" (the scheduler's quota tasks must never wait
// behind the quotas they reset).
func WithExempt(fn func(*asynq.Task) bool) Option {
	return func(t *Throttler) { t.exempt = fn }
}

// WithCost sets how many tokens, and quota units, a task costs; fn must
// return 1 or more (a task it gives less is archived). Default: the
// CostHeader header, 1 when the task has none; a task whose header is not a
// whole number of 1 or more is archived at once (reason "invalid_cost").
func WithCost(fn func(*asynq.Task) int64) Option {
	return func(t *Throttler) {
		t.cost = func(task *asynq.Task) (int64, error) { return fn(task), nil }
	}
}

// WithUpstream sets the shared limits a task is also checked against, such
// as the upstream API that all tenants call: the task runs only if its
// tenant and every upstream fn names admit it, in one atomic decision
// (nothing is consumed when one refuses). fn returns upstream names; each
// is limited under throttle.Upstream(name) and must be allowed by
// WithAllowedUpstreams. Default: the UpstreamHeader header, if the task has
// one.
func WithUpstream(fn func(*asynq.Task) []string) Option {
	return func(t *Throttler) { t.upstream = fn }
}

// WithAllowedUpstreams sets the upstream names a task may name (see
// WithUpstream): exact names or path.Match patterns such as "api.*.com"
// ("*" alone matches every name, '/' included). A
// task naming any other upstream is archived at once with an error naming
// it (archived reason "unknown_upstream"). Default: none, so a task that
// names an upstream is archived until its upstream is listed here. Check
// patterns with ValidateUpstreamPatterns.
func WithAllowedUpstreams(patterns ...string) Option {
	return func(t *Throttler) { t.upstreams = append([]string(nil), patterns...) }
}

// ValidateUpstreamPatterns reports whether each pattern is a valid
// path.Match pattern that can match an upstream name.
func ValidateUpstreamPatterns(patterns ...string) error {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("worker: upstream pattern %q: %w (use a name, or a pattern such as \"api.*\")", p, err)
		}
		if p == "" {
			return fmt.Errorf("worker: empty upstream pattern (give a name, or a pattern such as \"api.*\")")
		}
	}
	return nil
}

// allowsUpstream reports whether name matches one of the allowed patterns.
func (t *Throttler) allowsUpstream(name string) bool {
	for _, p := range t.upstreams {
		if ok, _ := path.Match(p, name); ok || p == "*" {
			return true
		}
	}
	return false
}

// WithMaxWait caps how long, in all, a task may wait because of throttling
// (the sum of its re-queue delays). A task that would pass it is archived at
// once, with an error saying so. Default 0: no cap, a task waits as long as
// it takes.
func WithMaxWait(d time.Duration) Option {
	return func(t *Throttler) { t.maxWait = d }
}

// WithMinDelay sets the shortest time a re-queued task stays away, even when
// its tokens are due sooner. It keeps the task from coming back before asynq
// has finished with the run that re-queued it. Default DefaultMinDelay.
func WithMinDelay(d time.Duration) Option {
	return func(t *Throttler) { t.minDelay = d }
}

// WithJitter caps the random delay added to each re-queue: up to a tenth of
// the delay, and at most d. Default DefaultJitter.
func WithJitter(d time.Duration) Option {
	return func(t *Throttler) { t.jitter = d }
}

// WithSlotTTL sets how long a task's concurrency slot (a tenant or an
// upstream whose policy has a Concurrency limit) is held without renewal:
// the Throttler renews it every third of ttl while the task runs and
// releases it when the task returns, so a worker that dies frees its slots
// at most ttl later. Default throttle.DefaultSlotTTL.
func WithSlotTTL(ttl time.Duration) Option {
	return func(t *Throttler) { t.slotTTL = ttl }
}

// WithErrorDelay sets how long a task is put back for when the limiter
// cannot be reached and fails closed. Default DefaultErrorDelay.
func WithErrorDelay(d time.Duration) Option {
	return func(t *Throttler) { t.errorDelay = d }
}

// WithMaxTracked sets how many re-queued tasks the Throttler wakes at their
// exact due time; beyond that, asynq's forwarder brings them back up to one
// second plus one DelayedTaskCheckInterval later. Default DefaultMaxTracked.
func WithMaxTracked(n int) Option {
	return func(t *Throttler) { t.maxTracked = n }
}

// WithWaitInProcess sets the longest a task waits in the process, holding
// its worker, for a slot booked before it was dequeued, instead of being put
// back: a shaped task that asynq's forwarder brought a little early, or a
// task whose turn among late tasks is near, then starts at its slot. A
// task booked at its dequeue waits in process only for less than the min
// delay (WithMinDelay). 0: tasks never wait in process. Default
// DefaultWaitInProcess.
func WithWaitInProcess(d time.Duration) Option {
	return func(t *Throttler) { t.waitIn = d }
}

// WithMaxRetryAfter caps the delay of a handler's RetryAfter (an upstream's
// 429 or 503 Retry-After) and of UpstreamSpent (a spent budget's reset): the
// task is put back, and its tenant held, for at most d. A longer delay ("Retry-After: 31536000", a date years ahead) is
// cut to d, logged and counted (Stats.RetryAfterCapped). d <= 0: the
// default, DefaultMaxRetryAfter.
func WithMaxRetryAfter(d time.Duration) Option {
	return func(t *Throttler) { t.maxRetryAfter = max(d, 0) }
}

// WithShadow turns shadow mode on or off. In shadow mode the middleware
// decides on every task, counts and logs what it would have throttled or
// archived, and runs every task: nothing is put back, held, archived or
// slowed down. It asks the limiter's Allow, which books nothing, instead of
// Reserve, whose bookings no task would redeem: the bucket then holds what
// enforcing would have let through. Tasks admitted take and free
// concurrency slots; an upstream's 429 (RetryAfter) is counted, not held,
// and returned to asynq as the handler's error. Counts: Stats.Shadow*, the
// quotaq_worker_shadow_* metrics, and a record in Redis that quotaq-enqueue
// status shows ("Shadow mode" in the package doc). Default false: enforce.
func WithShadow(on bool) Option {
	return func(t *Throttler) {
		t.shadow = nil
		if on {
			t.shadow = &shadowMode{record: shadowRecordEvery, summary: shadowSummaryEvery}
		}
	}
}

func defaultExempt(task *asynq.Task) bool { return strings.HasPrefix(task.Type(), "quotaq:") }

func headerUpstream(task *asynq.Task) []string {
	if id, ok := task.Headers()[UpstreamHeader]; ok {
		return []string{id}
	}
	return nil
}
