package worker

import (
	"context"
	"errors"
	"runtime"
	"time"

	"github.com/hibiken/asynq"
)

// Defaults ServerConfig sets when the config leaves them zero.
const (
	// DefaultDelayedTaskCheckInterval is how often asynq's forwarder moves
	// due scheduled and retry tasks to their queue (asynq's own default is
	// 5 s). Re-queued tasks do not wait for it: the Throttler brings them
	// back at their due time itself; the forwarder is their backstop and
	// serves asynq's retries and tasks enqueued with ProcessIn/ProcessAt.
	DefaultDelayedTaskCheckInterval = time.Second
	// DefaultTaskCheckInterval is how long asynq's processor sleeps when all
	// queues are empty (asynq's default is 1 s; it sleeps between half and
	// one and a half of it). A task the Throttler brings back to an idle
	// queue waits that long to be noticed, so a long sleep makes throttled
	// tasks start in clumps instead of at their slots (measured in the
	// quickstart: at 250 ms, 330 of 399 gaps of a 20/s tenant were under
	// 10 ms; at 20 ms, 72). 25 ms costs an idle worker 40 cheap polls a
	// second.
	DefaultTaskCheckInterval = 25 * time.Millisecond
)

// ServerConfig returns cfg made ready for a server that uses t.Middleware:
//
//   - ErrorHandler: cfg.ErrorHandler, no longer called for tasks put back
//     (ErrRequeued), which are not failures;
//   - Logger: cfg.Logger, or asynq's lines sent to t's slog logger when nil,
//     minus the two warnings asynq writes for each task put back;
//   - DelayedTaskCheckInterval: DefaultDelayedTaskCheckInterval when 0;
//   - TaskCheckInterval: DefaultTaskCheckInterval when 0.
//
// It also lets up to cfg.Concurrency tasks wait in process for their slot
// (WithWaitInProcess) instead of 8.
//
// Everything else is kept.
func (t *Throttler) ServerConfig(cfg asynq.Config) asynq.Config {
	if h := cfg.ErrorHandler; h != nil {
		cfg.ErrorHandler = asynq.ErrorHandlerFunc(func(ctx context.Context, task *asynq.Task, err error) {
			if !errors.Is(err, ErrRequeued) {
				h.HandleError(ctx, task, err)
			}
		})
	}
	next := cfg.Logger
	if next == nil {
		next = NewAsynqLogger(t.logger)
	}
	cfg.Logger = &quietLogger{next: next, revoked: &t.revoked}
	if cfg.DelayedTaskCheckInterval == 0 {
		cfg.DelayedTaskCheckInterval = DefaultDelayedTaskCheckInterval
	}
	if cfg.TaskCheckInterval == 0 {
		cfg.TaskCheckInterval = DefaultTaskCheckInterval
	}
	// the workers may wait in process for their slot (asynq's default
	// concurrency is the number of CPUs)
	c := cfg.Concurrency
	if c <= 0 {
		c = runtime.NumCPU()
	}
	t.waiting.max.Store(int64(max(c, 1)))
	return cfg
}
