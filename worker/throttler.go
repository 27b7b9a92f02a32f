package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/asynqrequeue"
	"github.com/quotaq/quotaq/throttle"
)

// ErrRequeued is matched (errors.Is) by the error the middleware returns to
// asynq for a task it put back in its queue. It also matches
// asynq.RevokeTask, so asynq leaves the task alone. It is not a failure:
// ServerConfig's ErrorHandler does not pass it on; an ErrorHandler of your
// own should skip it.
var ErrRequeued = errors.New("worker: task put back in its queue by the throttle")

var errRevokeRequeued = fmt.Errorf("%w (%w)", ErrRequeued, asynq.RevokeTask)

// Throttler is an asynq middleware that asks a throttle.Limiter, per tenant,
// before each task runs, and puts a task that must wait back in its queue,
// to come back when its tokens are due.
//
// A task put back is the very same task (id, type, payload, headers, queue,
// timeout, deadline, retention, unique lock and retry count are kept) moved
// to asynq's scheduled set; it is not a failure, whatever its MaxRetry: asynq
// counts it neither as failed nor as processed, its retry count does not
// move, and ServerConfig's ErrorHandler and logger do not report it. The
// limiter books its tokens (throttle.Request.Ticket), so the k-th throttled
// task of a tenant comes back at about its own slot, k/rate later, and runs
// then without asking again: no hot loop, no herd.
//
// Use it with ServeMux.Use(t.Middleware) and build the server's config with
// t.ServerConfig. A Throttler is safe for concurrent use; Close it after the
// server has shut down.
type Throttler struct {
	limiter  *throttle.Limiter
	requeuer *asynqrequeue.Requeuer
	waker    *asynqrequeue.Waker
	logger   *slog.Logger
	metrics  *Metrics

	tenantFunc func(*asynq.Task) (string, bool)
	untenanted string
	exempt     func(*asynq.Task) bool
	cost       func(*asynq.Task) (int64, error)
	upstream   func(*asynq.Task) []string
	upstreams  []string // WithAllowedUpstreams
	maxWait    time.Duration
	minDelay   time.Duration
	jitter     time.Duration
	errorDelay time.Duration
	maxTracked int
	waitIn     time.Duration // WithWaitInProcess
	waiting    waitSlots     // tasks waiting in process for their slot

	retimeMu sync.Mutex
	retiming map[string]bool // tenant -> asked again while moving its tasks
	retimers sync.WaitGroup

	stats          counters
	revoked        revokedSet
	warnUntenanted sync.Map // task type -> struct{}: logged once at Warn

	maxRetryAfter time.Duration // WithMaxRetryAfter; 0: DefaultMaxRetryAfter
	slotTTL       time.Duration // WithSlotTTL
	shadow        *shadowMode   // WithShadow; nil: decisions are enforced
}

// New returns a Throttler that asks l and re-queues on asynqRedis, the
// Redis the asynq server dequeues from (which may differ from l's). It
// starts a goroutine that brings re-queued tasks back at their due time;
// Close stops it. New does not check the asynq version the program links:
// NewChecked does.
func New(l *throttle.Limiter, asynqRedis redis.UniversalClient, opts ...Option) *Throttler {
	t := configure(l, opts)
	t.requeuer = asynqrequeue.New(asynqRedis)
	t.waker = asynqrequeue.NewWaker(t.requeuer, t.logger, t.maxTracked)
	if t.shadow != nil {
		t.startShadow(asynqRedis)
	}
	return t
}

// configure returns a Throttler with its defaults and opts applied, and
// nothing started: what New and NewShaper share.
func configure(l *throttle.Limiter, opts []Option) *Throttler {
	t := &Throttler{
		limiter:    l,
		logger:     slog.Default(),
		untenanted: DefaultUntenanted,
		exempt:     defaultExempt,
		cost:       headerCost,
		upstream:   headerUpstream,
		minDelay:   DefaultMinDelay,
		jitter:     DefaultJitter,
		errorDelay: DefaultErrorDelay,
		maxTracked: DefaultMaxTracked,
		waitIn:     DefaultWaitInProcess,
		slotTTL:    throttle.DefaultSlotTTL,
	}
	t.waiting.max.Store(defaultWaitSlots)
	for _, o := range opts {
		o(t)
	}
	return t
}

// Close stops bringing re-queued tasks back at their exact due time; asynq's
// forwarder still brings them back, later. Call it after the asynq server
// has shut down.
func (t *Throttler) Close() error {
	t.stopShadow()
	t.retimers.Wait()
	t.waker.Stop()
	return nil
}

// Release brings back now the tasks of the given tenants (every tenant's
// when none is given) that were put back to wait for nothing booked: a
// quota used up, a pause, the limiter unavailable. Call it when that ended
// early: a quota reset, a higher policy. They are decided again when
// dequeued, so the limiter spreads them at the new allowance. The named
// tenants' tasks that wait for a booked slot move to their slots' times
// (a new rate re-spaces the bookings) and are woken then. It returns how
// many tasks it brought back. The scheduler's resets and adjustments
// (scheduler.WithRelease) call it; the CLI does the same (ReleaseParked).
func (t *Throttler) Release(ctx context.Context, tenants ...string) (int, error) {
	n, err := t.requeuer.Release(ctx, tenants...)
	for _, tenant := range tenants {
		t.retime(tenant)
	}
	return n, err
}

// ReleaseParked is Throttler.Release for a program without a Throttler (the
// CLI): asynqRedis is the Redis asynq's tasks are on, l the limiter whose
// bookings the tasks hold. Moved tasks come back by asynq's forwarder, at
// the whole second after their slot.
func ReleaseParked(ctx context.Context, asynqRedis redis.UniversalClient, l *throttle.Limiter, tenants ...string) (int, error) {
	r := asynqrequeue.New(asynqRedis)
	n, err := r.Release(ctx, tenants...)
	for _, tenant := range tenants {
		if _, rerr := r.Retime(ctx, tenant, ticketDues(ctx, l, tenant)); rerr != nil && err == nil {
			err = rerr
		}
	}
	return n, err
}

// Stats returns the Throttler's counts so far.
func (t *Throttler) Stats() Stats { return t.stats.snapshot() }

// job is one dequeued task as the middleware sees it.
type job struct {
	task   *asynq.Task
	queue  string
	id     string
	tenant string
	ids    []string // tenant, then upstream ids (throttle.Upstream)
	n      int64
	// slotOf is the id all of whose concurrency slots were taken when the
	// task asked: it waits for one of them
	slotOf string
	by     string // the id that decided the last answer (throttle.Result.Tenant)
}

func (j *job) ticket() string { return TaskTicket(j.queue, j.id) }

// Middleware asks the limiter before next runs a task; see Throttler. Its
// signature is asynq.MiddlewareFunc's: mux.Use(t.Middleware).
//
// A task whose tenant is invalid, or that costs more than its tenant's
// burst, or that would wait longer than WithMaxWait, is archived at once
// (asynq.SkipRetry) with an error that says why. A handler that returns
// RetryAfter has its task put back, not failed. In shadow mode
// (WithShadow) it only counts and logs what it would have done, and runs
// every task.
func (t *Throttler) Middleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		if t.exempt != nil && t.exempt(task) {
			return next.ProcessTask(ctx, task)
		}
		if t.shadow != nil {
			return t.shadowRun(ctx, task, next)
		}
		j, err := t.newJob(ctx, task)
		if err != nil {
			return err
		}
		slot, err := t.admit(ctx, j)
		if err != nil {
			return err
		}
		if slot {
			defer t.holdSlot(ctx, j)()
		}
		t.observeWait(ctx, j)
		sink := &budgetSink{}
		err = next.ProcessTask(context.WithValue(ctx, budgetKey{}, sink), task)
		if ra, ok := asRetryAfter(err); ok {
			return t.upstreamSaidStop(ctx, j, ra)
		}
		if d := sink.take(); d > 0 {
			t.upstreamSpent(ctx, j, d)
		}
		return err
	})
}

// newJob finds the task's tenant, upstream ids and cost; a task that cannot
// be decided on is archived.
func (t *Throttler) newJob(ctx context.Context, task *asynq.Task) (*job, error) {
	j, err := jobOf(ctx, task)
	if err != nil {
		return nil, err
	}
	c, err := t.chargeOf(task, j.id)
	j.tenant, j.ids, j.n = c.tenant, c.ids, c.n
	if err != nil {
		return nil, t.archive(j, c.refusal, err)
	}
	return j, nil
}

// jobOf returns the job of a task asynq runs, with its queue and id.
func jobOf(ctx context.Context, task *asynq.Task) (*job, error) {
	j := &job{task: task}
	j.queue, _ = asynq.GetQueueName(ctx)
	j.id, _ = asynq.GetTaskID(ctx)
	if j.queue == "" || j.id == "" {
		return nil, fmt.Errorf("worker: no task id in the context: the Throttler's middleware must run inside an asynq server")
	}
	return j, nil
}

// charge is what a task costs and whom it charges.
type charge struct {
	tenant  string
	ids     []string // tenant, then upstream ids (throttle.Upstream)
	n       int64
	refusal string // why not, as an archived_total reason, when chargeOf fails
}

// chargeOf finds whom task charges (its tenant, then its upstream ids) and
// how many tokens; the Throttler and the Shaper share it, so a task shaped
// at enqueue is booked under exactly the ids and cost the middleware asks
// for. An error means the task cannot be decided on; c.refusal says why.
// id is the task's id, for logs ("" when not known yet).
func (t *Throttler) chargeOf(task *asynq.Task, id string) (c charge, err error) {
	tenant, src, err := t.tenantOf(task)
	switch {
	case err != nil:
		return charge{refusal: "invalid_tenant"}, fmt.Errorf("%w (fix the task's tenant and enqueue it again)", err)
	case src == fromUntenanted && t.untenanted == "":
		return charge{refusal: "no_tenant"}, fmt.Errorf("worker: task type %q has no tenant (no %q header, no \"tenant\" field in a JSON payload) and tasks without one are refused (WithUntenanted)",
			task.Type(), TenantHeader)
	case src == fromUntenanted:
		tenant = t.untenanted
		if _, seen := t.warnUntenanted.LoadOrStore(task.Type(), struct{}{}); !seen {
			t.logger.Warn("worker: tasks of this type have no tenant; they are limited together under the untenanted id, with its policy",
				"type", task.Type(), "untenanted_id", tenant)
		} else {
			t.logger.Debug("worker: task has no tenant; limited under the untenanted id", "type", task.Type(), "task_id", id, "untenanted_id", tenant)
		}
	}
	c.tenant = tenant
	c.ids = []string{tenant}
	for _, up := range t.upstream(task) {
		if err := throttle.ValidateUpstream(up); err != nil {
			c.refusal = "invalid"
			return c, fmt.Errorf("worker: upstream of task type %q: %w", task.Type(), err)
		}
		if !t.allowsUpstream(up) {
			c.refusal = "unknown_upstream"
			return c, fmt.Errorf("worker: task type %q names upstream %q, which this worker does not accept (allowed: %q); list it in WithAllowedUpstreams (quotaq-worker --upstreams) or fix the task",
				task.Type(), up, t.upstreams)
		}
		c.ids = append(c.ids, throttle.Upstream(up))
	}
	if c.n, err = t.cost(task); err != nil {
		c.refusal = "invalid_cost"
		return c, fmt.Errorf("%w (fix the task's cost and enqueue it again)", err)
	}
	if c.n < 1 {
		c.refusal = "invalid_cost"
		return c, fmt.Errorf("worker: task type %q costs %d tokens; a cost must be at least 1", task.Type(), c.n)
	}
	return c, nil
}

// admit asks the limiter. It returns a nil error when the task may run now
// (and whether it holds a concurrency slot, see holdSlot), else the error
// to hand asynq: the task was put back, or archived. A task whose slot is
// near waits for it here and asks again (see waitFor), so that it starts at
// its slot, not with the tasks that came back at the same time; a task
// waiting for a concurrency slot is put back until one frees.
func (t *Throttler) admit(ctx context.Context, j *job) (slot bool, err error) {
	req := throttle.Request{IDs: j.ids, N: j.n, MaxWait: t.maxWait, Ticket: j.ticket(), Slot: j.ticket(), SlotTTL: t.slotTTL}
	asked := time.Now()
	res, err := t.limiter.Reserve(ctx, req)
	if m := t.metrics; m != nil {
		m.decision.WithLabelValues(m.typ(j.task.Type())).Observe(time.Since(asked).Seconds())
	}
	why := reasonLabel(res.Result.Reason) // of the first answer, when it said wait
	var waited time.Duration              // in all, for this dequeue
	for err == nil && res.OK && res.Delay > 0 && res.Result.Reason != throttle.ReasonConcurrency &&
		t.waitFor(ctx, j.task.Type(), res, waited) {
		waited += res.Delay
		res, err = t.limiter.Reserve(ctx, req)
	}
	if waited > 0 && err == nil && res.OK && res.Delay <= 0 {
		t.countWaited(j, why)
	}
	if err != nil {
		t.countError(j, "limiter")
		if res.OK {
			t.logger.Warn("worker: limiter unavailable; failing open, task runs", "type", j.task.Type(), "tenant", j.tenant, "task_id", j.id, "err", err)
			t.countAllowed(j, "fail_open")
			return false, nil
		}
		reason := "unavailable"
		if errors.Is(err, throttle.ErrInvalidTenant) || errors.Is(err, throttle.ErrInvalidCost) || errors.Is(err, throttle.ErrInvalidPolicy) {
			t.logger.Error("worker: limiter refused the request", "type", j.task.Type(), "tenant", j.tenant, "task_id", j.id, "err", err)
			reason = "invalid"
		} else {
			t.logger.Warn("worker: limiter unavailable; failing closed, task put back", "type", j.task.Type(), "tenant", j.tenant, "task_id", j.id, "delay", t.errorDelay, "err", err)
		}
		return false, t.putBack(ctx, j, t.errorDelay, reason, false)
	}
	j.by = res.Result.Tenant
	if res.Result.Reason == throttle.ReasonConcurrency {
		// woken when one of its slots frees; res.Delay is when the first
		// slot would run out (the latest one frees, if its holder died):
		// the tasks still waiting then come back spread over as long
		// again, not all at once
		j.slotOf = res.Result.Tenant
		if res.Delay > 0 {
			res.Delay += rand.N(res.Delay)
		}
	}
	switch {
	case res.OK && res.Delay <= 0:
		t.countAllowed(j, "now")
		return res.Result.HoldsSlot, nil
	case res.OK:
		return false, t.putBack(ctx, j, res.Delay, reasonLabel(res.Result.Reason), true)
	case res.Result.Reason == throttle.ReasonCost:
		return false, t.archive(j, "cost_above_burst", fmt.Errorf("worker: task type %q costs %d tokens, more than the burst of %q: it can never run (raise the burst or lower the cost)",
			j.task.Type(), j.n, res.Result.Tenant))
	default: // nothing booked: quota used up, paused, no slot free, or the wait passes the max wait
		return false, t.putBack(ctx, j, res.Delay, reasonLabel(res.Result.Reason), false)
	}
}

// upstreamSaidStop handles a handler's RetryAfter: hold the tenant for the
// delay and slow it down (throttle.Limiter.Backoff: it learns the
// upstream's rate), book the task's next run, and put it back.
func (t *Throttler) upstreamSaidStop(ctx context.Context, j *job, ra *RetryAfterError) error {
	t.stats.retryAfter.Add(1)
	if m := t.metrics; m != nil {
		m.retryAfter.WithLabelValues(m.labels(j.task.Type(), j.tenant)...).Inc()
	}
	ra = t.capRetryAfter(j, ra)
	t.logger.Info("worker: upstream asked to retry later; tenant held", "type", j.task.Type(), "tenant", j.tenant, "task_id", j.id, "delay", ra.Delay, "err", ra.Err)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	delay, booked := ra.Delay, false
	if err := t.limiter.Backoff(ctx, j.tenant, ra.Delay); err != nil {
		t.countError(j, "hold")
		t.logger.Warn("worker: could not hold tenant", "tenant", j.tenant, "delay", ra.Delay, "err", err)
		return t.putBack(ctx, j, delay, "upstream", false)
	}
	// the tenant's slots moved: so do its tasks parked at them
	t.retimeLater(j.tenant)
	res, err := t.limiter.Reserve(ctx, throttle.Request{IDs: j.ids, N: j.n, MaxWait: t.maxWait, Ticket: j.ticket(), KeepTicket: true})
	switch {
	case err != nil:
		t.countError(j, "limiter")
	case res.OK:
		// its next slot, after the pause, at the rate learned (kept under
		// its ticket even when it is now: the task redeems it when back)
		delay, booked = max(res.Delay, ra.Delay), true
	}
	return t.putBack(ctx, j, delay, "upstream", booked)
}

// upstreamSpent handles a handler's UpstreamSpent: the upstream said its
// budget is spent for d, so the tenant is held for d (without slowing it
// down: the upstream refused nothing), and its parked tasks move with their
// slots.
func (t *Throttler) upstreamSpent(ctx context.Context, j *job, d time.Duration) {
	d = t.capUpstreamDelay(j, d, errors.New("upstream budget spent"))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := t.limiter.Hold(ctx, j.tenant, d); err != nil {
		t.countError(j, "hold")
		t.logger.Warn("worker: could not hold tenant whose upstream budget is spent", "tenant", j.tenant, "delay", d, "err", err)
		return
	}
	t.logger.Info("worker: upstream says its budget is spent; tenant held until it is back", "type", j.task.Type(), "tenant", j.tenant, "task_id", j.id, "delay", d)
	t.retimeLater(j.tenant)
}

// putBack moves the task back to its queue, due after delay (at least the
// min delay; plus jitter when nothing is booked for it, as a booked slot is
// its own), and returns the error that tells asynq to leave it there. booked
// says the limiter holds tokens for it under its ticket, to be given back if
// it cannot be put back.
func (t *Throttler) putBack(ctx context.Context, j *job, delay time.Duration, reason string, booked bool) error {
	wait := max(delay, t.minDelay)
	if !booked {
		wait = max(delay+t.jitterFor(delay), t.minDelay)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	out, err := t.requeuer.Requeue(ctx, asynqrequeue.Request{Queue: j.queue, ID: j.id, Due: time.Now().Add(wait), MaxWait: t.maxWait,
		Tenant: j.tenant, Parked: !booked, WaitsForSlotOf: j.slotOf, Cause: waitCause(reason, j.by)})
	if err != nil && booked {
		if cerr := t.limiter.CancelTicket(ctx, throttle.Request{IDs: j.ids, N: j.n, Ticket: j.ticket()}); cerr != nil {
			t.countError(j, "limiter")
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, asynqrequeue.ErrMaxWait):
		return t.archive(j, "max_wait", fmt.Errorf("worker: task %s of tenant %q would wait %s in all because of throttling (put back %d times), more than the max wait of %s",
			j.id, j.tenant, out.Waited.Round(time.Millisecond), out.Throttles, t.maxWait))
	default:
		t.countError(j, "requeue")
		t.logger.Error("worker: could not put a throttled task back in its queue", "type", j.task.Type(), "tenant", j.tenant, "task_id", j.id, "err", err)
		return fmt.Errorf("worker: could not put throttled task %s back in queue %q: %w", j.id, j.queue, err)
	}
	t.revoked.add(j.id)
	t.waker.Add(j.queue, j.id, out.DueMillis)
	rethrottled := reason != "upstream" && out.Throttles > 1
	t.stats.throttled.Add(1)
	t.stats.requeued.Add(1)
	if rethrottled {
		t.stats.rethrottled.Add(1)
	}
	if m := t.metrics; m != nil {
		who := m.labels(j.task.Type(), j.tenant)
		m.throttled.WithLabelValues(append(who, reason)...).Inc()
		m.requeued.WithLabelValues(who...).Inc()
		if rethrottled {
			m.rethrottled.WithLabelValues(who...).Inc()
		}
		m.delay.WithLabelValues(m.typ(j.task.Type())).Observe(wait.Seconds())
	}
	t.logger.Debug("worker: task put back", "type", j.task.Type(), "tenant", j.tenant, "task_id", j.id,
		"reason", reason, "delay", wait, "booked", booked, "times", out.Throttles)
	return errRevokeRequeued
}

// archive counts and logs a task archived by the Throttler and returns err
// wrapped with asynq.SkipRetry, so asynq archives it at once with err's text.
func (t *Throttler) archive(j *job, reason string, err error) error {
	t.stats.archived.Add(1)
	if m := t.metrics; m != nil {
		m.archived.WithLabelValues(m.typ(j.task.Type()), reason).Inc()
	}
	t.logger.Warn("worker: task archived", "type", j.task.Type(), "tenant", j.tenant, "task_id", j.id, "reason", reason, "err", err)
	return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
}

// countWaited counts a dequeue that was told to wait (why) and waited in
// the process, then ran: throttled, not put back.
func (t *Throttler) countWaited(j *job, why string) {
	t.stats.throttled.Add(1)
	t.stats.waitedInProcess.Add(1)
	if m := t.metrics; m != nil {
		who := m.labels(j.task.Type(), j.tenant)
		m.throttled.WithLabelValues(append(who, why)...).Inc()
		m.waited.WithLabelValues(who...).Inc()
	}
}

func (t *Throttler) countAllowed(j *job, via string) {
	t.stats.allowed.Add(1)
	if m := t.metrics; m != nil {
		m.allowed.WithLabelValues(m.labels(j.task.Type(), j.tenant, via)...).Inc()
	}
}

func (t *Throttler) countError(j *job, op string) {
	t.stats.errors.Add(1)
	if m := t.metrics; m != nil {
		m.errors.WithLabelValues(m.typ(j.task.Type()), op).Inc()
	}
}

// jitterFor returns a random delay of up to a tenth of delay, at most the
// jitter cap.
func (t *Throttler) jitterFor(delay time.Duration) time.Duration {
	c := min(t.jitter, delay/10)
	if c <= 0 {
		return 0
	}
	return rand.N(c)
}

func reasonLabel(r throttle.Reason) string {
	switch r {
	case throttle.ReasonQuota:
		return "quota"
	case throttle.ReasonPaused:
		return "paused"
	case throttle.ReasonConcurrency:
		return "concurrency"
	default:
		return "rate"
	}
}
