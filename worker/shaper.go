package worker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
)

// ErrMaxWait is matched (errors.Is) by the error of Shaper.Enqueue for a
// task whose tokens would only be due after the Shaper's max wait
// (WithMaxWait): nothing was booked and nothing enqueued.
var ErrMaxWait = errors.New("worker: the task would wait longer than the max wait")

// Shaper enqueues asynq tasks at the time their tenant's tokens will be
// there: shaping at enqueue time. For each task it books the tokens with the
// limiter under the task's ticket (TaskTicket), then enqueues the task to be
// processed at their due time. When the task comes, the Throttler's
// middleware asks with the same ticket and redeems the booking: the task
// runs without being charged a second time, and without being refused and
// put back first.
//
// Use it for a backlog far beyond a tenant's rate. Enqueued plainly, every
// task of such a backlog sits in the queue and is dequeued twice, once to be
// refused and booked at its slot, once to run, and the other tenants' tasks
// of the same queue wait behind all of it. Shaped, the tasks that must wait
// sit in asynq's scheduled set, each at its own slot, and the queue only
// ever holds tasks that may run: one dequeue per task, and a quiet tenant's
// tasks are not stuck behind a noisy one's. The cost moves to the producer:
// one reservation (a Redis script) per enqueued task.
//
// asynq's scheduled set counts whole seconds, and its forwarder moves every
// task whose second has come, so a task is scheduled at its due time rounded
// up to the next whole second: it never arrives before its tokens. The
// forwarder runs every DelayedTaskCheckInterval (ServerConfig sets 1 s), so a
// shaped task starts up to about two seconds after its slot (the rounding,
// then the forwarder), and the tasks of one second start together; over a
// backlog the rate is the policy's.
//
// A Shaper is safe for concurrent use.
type Shaper struct {
	limiter *throttle.Limiter
	client  *asynq.Client
	rules   *Throttler // the options: tenant, upstream, cost, exempt, max wait
	now     func() time.Time
}

// NewShaper returns a Shaper that books with l and enqueues with c.
//
// opts are the Throttler's options: give it the ones the workers' Throttler
// has, so that both find the same tenant, upstream ids and cost and the
// booking is redeemed. It uses WithTenantFunc, WithUntenanted, WithUpstream,
// WithCost, WithExempt, WithLogger and WithMaxWait, which here caps how far
// ahead a task may be booked (Enqueue then fails with ErrMaxWait); the other
// options do not apply to enqueueing and are ignored.
func NewShaper(l *throttle.Limiter, c *asynq.Client, opts ...Option) *Shaper {
	return &Shaper{limiter: l, client: c, rules: configure(l, opts), now: time.Now}
}

// Enqueue books task's tokens and enqueues it to be processed when they are
// due: at once when they are there now, else asynq.ProcessAt their due time,
// rounded up to the next whole second. opts are asynq's enqueue options.
//
// The ticket names the task's queue and id, so Enqueue reads them from opts
// (asynq.Queue, default "default"; asynq.TaskID) and gives the task a random
// id when it has none. Options the task carries itself (given to
// asynq.NewTask) cannot be read: give Queue and TaskID to Enqueue. If the
// task still ends up under another queue or id than the one booked, the
// tokens are given back and the task is charged by the worker when it runs,
// as if it had not been shaped. With asynq.ProcessAt or ProcessIn in opts, the
// task is processed at the later of that time and its tokens' due time.
//
// Enqueue fails, and enqueues nothing, when the task has no valid tenant (or
// none, and WithUntenanted("") refuses such tasks), costs more than its
// tenant's burst, or would wait longer than the max wait (ErrMaxWait). When
// tokens cannot be booked for a reason that passes with time (the quota is
// used up; an algorithm that cannot book ahead), the task is enqueued
// unbooked, to be processed when the limiter says to ask again, and the
// worker decides then. Exempt tasks (WithExempt) are enqueued as they are.
// When the enqueue fails after the booking, the tokens are given back.
func (s *Shaper) Enqueue(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	if task == nil {
		return nil, errors.New("worker: Shaper.Enqueue of a nil task")
	}
	if s.rules.exempt != nil && s.rules.exempt(task) {
		return s.client.EnqueueContext(ctx, task, opts...)
	}
	queue, id, at := enqueueTarget(opts)
	if id == "" {
		id = rand.Text()
		opts = append(opts, asynq.TaskID(id))
	}
	c, err := s.rules.chargeOf(task, id)
	if err != nil {
		return nil, fmt.Errorf("%w; the task was not enqueued", err)
	}
	req := throttle.Request{IDs: c.ids, N: c.n, MaxWait: s.rules.maxWait, Ticket: TaskTicket(queue, id), KeepTicket: true}
	res, err := s.limiter.Reserve(ctx, req)
	if err != nil {
		if res.OK { // failing open: nothing was booked, the worker decides
			return s.client.EnqueueContext(ctx, task, opts...)
		}
		return nil, fmt.Errorf("worker: book tokens for task type %q of tenant %q: %w; the task was not enqueued", task.Type(), c.tenant, err)
	}
	switch {
	case !res.OK && res.Result.Reason == throttle.ReasonCost:
		return nil, fmt.Errorf("worker: task type %q costs %d tokens, more than the burst of %q: it can never run (raise the burst or lower the cost): %w; the task was not enqueued",
			task.Type(), c.n, res.Result.Tenant, throttle.ErrInvalidCost)
	case !res.OK && s.rules.maxWait > 0 && res.Delay > s.rules.maxWait:
		return nil, fmt.Errorf("%w: task type %q of tenant %q would wait %s (%s), more than the max wait of %s; the task was not enqueued",
			ErrMaxWait, task.Type(), c.tenant, res.Delay.Round(time.Millisecond), res.Result.Reason, s.rules.maxWait)
	case !res.OK: // nothing booked: ask again later, the worker decides then
		return s.client.EnqueueContext(ctx, task, append(opts, asynq.ProcessAt(later(at, s.now().Add(res.Delay))))...)
	}
	if res.Delay > 0 || at.After(s.now()) {
		opts = append(opts, asynq.ProcessAt(later(at, s.now().Add(res.Delay))))
	}
	info, err := s.client.EnqueueContext(ctx, task, opts...)
	if err != nil || info.Queue != queue || info.ID != id {
		// Not enqueued, or not under the ticket booked: give the tokens back.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if cerr := s.limiter.CancelTicket(cctx, req); cerr != nil {
			s.rules.logger.Warn("worker: could not give back the tokens of a task not enqueued as booked", "type", task.Type(), "tenant", c.tenant, "ticket", req.Ticket, "err", cerr)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("worker: enqueue task type %q of tenant %q (its tokens were given back): %w", task.Type(), c.tenant, err)
	}
	return info, nil
}

// enqueueTarget reads the queue, task id and process time set by opts, the
// last one of each winning, as in asynq.
func enqueueTarget(opts []asynq.Option) (queue, id string, at time.Time) {
	queue = "default"
	for _, o := range opts {
		switch o.Type() {
		case asynq.QueueOpt:
			queue, _ = o.Value().(string)
		case asynq.TaskIDOpt:
			id, _ = o.Value().(string)
		case asynq.ProcessAtOpt:
			at, _ = o.Value().(time.Time)
		case asynq.ProcessInOpt:
			d, _ := o.Value().(time.Duration)
			at = time.Now().Add(d)
		}
	}
	return queue, id, at
}

// later returns the later of at and due rounded up to the next whole second.
func later(at, due time.Time) time.Time {
	if r := due.Truncate(time.Second); r.Before(due) {
		due = r.Add(time.Second)
	}
	if at.After(due) {
		return at
	}
	return due
}
