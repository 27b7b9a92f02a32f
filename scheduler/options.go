package scheduler

import (
	"context"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// Option configures a Scheduler (New) or the task handlers
// (RegisterHandlers). Each says which it applies to; the other ignores it, so
// one list of options can be passed to both.
type Option func(*config)

type config struct {
	logger  *slog.Logger
	queue   string
	clock   Clock
	release func(ctx context.Context, tenants ...string) (int, error)
	metrics *Metrics
}

func newConfig(opts []Option) config {
	c := config{
		logger: slog.Default(),
		queue:  "default",
		clock:  systemClock{},
	}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithLogger sets the logger of the Scheduler and of the handlers. Default
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithQueue sets the asynq queue the Scheduler enqueues into. Default
// "default". Every replica must use the same queue: asynq task IDs are unique
// per queue.
func WithQueue(name string) Option {
	return func(c *config) {
		if name != "" {
			c.queue = name
		}
	}
}

// WithClock sets the Scheduler's clock. Default the system clock; tests pass
// a fake one to drive firings.
func WithClock(clk Clock) Option {
	return func(c *config) {
		if clk != nil {
			c.clock = clk
		}
	}
}

// WithRedis does nothing.
//
// Deprecated: the handlers kept the "adaptive" entries' state in it; the
// action is retired (the limiter learns an upstream's rate itself).
func WithRedis(redis.UniversalClient) Option { return func(*config) {} }

// WithRelease sets what brings a tenant's parked tasks back (those waiting
// for a quota reset or a pause: worker.Throttler.Release), called for the
// tenants a reset or an adjustment changed (none: every tenant), so that
// they run at the new allowance at once instead of at the end of the
// period they were parked for. Handlers only. Default: none.
func WithRelease(fn func(ctx context.Context, tenants ...string) (int, error)) Option {
	return func(c *config) { c.release = fn }
}

// WithPrefix does nothing.
//
// Deprecated: it named the "adaptive" entries' keys; the action is retired.
func WithPrefix(string) Option { return func(*config) {} }
