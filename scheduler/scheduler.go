package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hibiken/asynq"
)

// MinWindow is the shortest time during which a firing may still be
// enqueued: retries after an error, a slow wake-up and replicas whose clocks
// differ by less than this all stay within it, even for an entry with
// catch_up 0.
const MinWindow = time.Minute

// Scheduler enqueues the tasks of a Schedule at their fire times. Run one in
// every worker process, or a few replicas anywhere: each firing has a task
// ID made of the entry's name and the scheduled fire time (TaskID), so asynq
// enqueues it once however many replicas fire it.
//
// Scheduler uses robfig/cron's parser and schedules, not its runner: cron's
// runner does not tell a job its scheduled time, which the task ID needs, and
// reads the system clock, which tests cannot drive.
type Scheduler struct {
	client  *asynq.Client
	entries []Entry
	cfg     config

	mu      sync.Mutex
	cancel  context.CancelFunc
	running sync.WaitGroup // the loop and the firings in flight
}

// New returns a Scheduler that enqueues s's tasks with c. Options:
// WithLogger, WithQueue, WithClock, WithMetrics. Call Start to run it.
func New(c *asynq.Client, s *Schedule, opts ...Option) *Scheduler {
	sc := &Scheduler{client: c, cfg: newConfig(opts)}
	if s != nil {
		sc.entries = s.Entries
	}
	sc.cfg.metrics.entries(sc.entries)
	return sc
}

// Start fires, for each entry, its most recent missed firing if that is
// within the entry's catch-up window, and then every firing as it comes, in
// its own goroutine. It does nothing when the Scheduler runs already.
func (s *Scheduler) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		s.run(ctx)
	}()
}

// Stop stops the Scheduler and abandons the retries of firings that could
// not be enqueued yet. The returned context is done once the enqueue
// attempts under way have returned. Stop on a stopped Scheduler returns a
// context that is done at once.
func (s *Scheduler) Stop() context.Context {
	s.mu.Lock()
	if s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
	s.mu.Unlock()
	ctx, done := context.WithCancel(context.Background())
	go func() {
		s.running.Wait()
		done()
	}()
	return ctx
}

func (s *Scheduler) run(ctx context.Context) {
	clk := s.cfg.clock
	now := clk.Now()
	next := make([]time.Time, len(s.entries))
	for i, e := range s.entries {
		if fire := missed(e, now); !fire.IsZero() {
			s.cfg.logger.Info("scheduler: catching up a missed firing", "entry", e.Name, "fire_time", fire, "late", now.Sub(fire))
			s.fire(ctx, e, fire)
		}
		next[i] = e.Schedule.Next(now)
	}
	for {
		var first time.Time
		for _, n := range next {
			if !n.IsZero() && (first.IsZero() || n.Before(first)) {
				first = n
			}
		}
		var wake <-chan time.Time
		if !first.IsZero() {
			wake = clk.After(first.Sub(now))
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
		now = clk.Now()
		for i, e := range s.entries {
			if next[i].IsZero() || next[i].After(now) {
				continue
			}
			// Woken late (suspend, clock jump): only the latest due firing
			// counts, and only within the entry's window, as at start.
			fire := next[i]
			if last := prevFire(e.Schedule, fire, now); !last.IsZero() {
				s.cfg.logger.Warn("scheduler: skipped firings while not running", "entry", e.Name, "from", fire, "to", last)
				fire = last
			}
			if late := now.Sub(fire); late > window(e) {
				s.cfg.logger.Warn("scheduler: firing too late, skipped", "entry", e.Name, "fire_time", fire, "late", late, "window", window(e))
				s.cfg.metrics.fired(e.Name, "skipped")
			} else {
				s.fire(ctx, e, fire)
			}
			next[i] = e.Schedule.Next(fire)
		}
	}
}

// missed returns the latest firing of e in (now-e.CatchUp, now], or zero.
func missed(e Entry, now time.Time) time.Time {
	if e.CatchUp <= 0 {
		return time.Time{}
	}
	return prevFire(e.Schedule, now.Add(-e.CatchUp), now)
}

// window is how long after its fire time a firing of e may be enqueued.
func window(e Entry) time.Duration { return max(e.CatchUp, MinWindow) }

// fire enqueues e's firing at fire in a goroutine, retrying with backoff
// until it is enqueued, the entry's next firing is due, its window has
// passed, or ctx is done.
func (s *Scheduler) fire(ctx context.Context, e Entry, fire time.Time) {
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		giveUp := fire.Add(window(e))
		if n := e.Schedule.Next(fire); !n.IsZero() && n.Before(giveUp) {
			giveUp = n
		}
		backoff := time.Second
		for attempt := 1; ; attempt++ {
			// Stop does not interrupt an attempt under way, only the
			// waits between attempts.
			enqueued, err := s.enqueue(context.WithoutCancel(ctx), e, fire)
			switch {
			case err == nil && enqueued:
				s.cfg.metrics.fired(e.Name, "enqueued")
				return
			case err == nil:
				s.cfg.metrics.fired(e.Name, "already_enqueued")
				return
			}
			s.cfg.metrics.enqueueFailed(e.Name)
			now := s.cfg.clock.Now()
			if ctx.Err() != nil || !now.Add(backoff).Before(giveUp) {
				s.cfg.logger.Error("scheduler: firing not enqueued, giving up", "entry", e.Name, "fire_time", fire, "attempts", attempt, "err", err)
				s.cfg.metrics.fired(e.Name, "failed")
				return
			}
			s.cfg.logger.Warn("scheduler: enqueue failed, retrying", "entry", e.Name, "fire_time", fire, "attempt", attempt, "retry_in", backoff, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-s.cfg.clock.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}()
}

// enqueue enqueues e's task for its firing at fire, once: it reports
// whether this call enqueued it, and returns nil, not an error, when another
// replica (or an earlier run) did already.
func (s *Scheduler) enqueue(ctx context.Context, e Entry, fire time.Time) (bool, error) {
	task, err := e.Task(fire)
	if err != nil {
		return false, err
	}
	id := TaskID(e.Name, fire)
	// Keep the finished task, and so its ID, for the whole window in which
	// another replica may still enqueue this firing.
	_, err = s.client.EnqueueContext(ctx, task, asynq.Queue(s.cfg.queue), asynq.Retention(window(e)+MinWindow))
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		s.cfg.logger.Info("scheduler: already enqueued by another replica", "entry", e.Name, "fire_time", fire, "task_id", id)
		return false, nil
	case err != nil:
		return false, fmt.Errorf("scheduler: enqueue entry %q firing at %s: %w", e.Name, fire.Format(time.RFC3339), err)
	}
	s.cfg.logger.Info("scheduler: enqueued", "entry", e.Name, "action", e.Action, "fire_time", fire, "task_id", id, "queue", s.cfg.queue)
	return true, nil
}
