package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/scheduler"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// runWorker is an asynq worker with quotaq added, as quotaq-worker builds
// its own: the lines marked "quotaq" are all it takes. It serves until ctx
// is cancelled, then lets running tasks finish and hands the rest back.
// README.md shows this function ("Add quotaq to your asynq worker").
func runWorker(ctx context.Context, rdb redis.UniversalClient, sendEmail asynq.HandlerFunc, sched *scheduler.Schedule, logger *slog.Logger) error {
	// quotaq: one limiter per process, shared by every worker through Redis.
	// Tenants without a policy of their own get 10/s. Leases (as
	// quotaq-worker's --lease 100ms) admit a tenant far under its limits
	// without a round trip per task, never past its policy.
	limiter := throttle.New(rdb,
		throttle.WithDefaultPolicy(throttle.PerSecond(10)),
		throttle.WithLeases(100*time.Millisecond, 0),
	)
	if err := limiter.Err(); err != nil {
		return err
	}
	// quotaq: the middleware; NewChecked refuses an asynq version it is not
	// tested with.
	t, err := worker.NewChecked(limiter, rdb, worker.WithLogger(logger))
	if err != nil {
		return err
	}
	defer t.Close() // after srv.Shutdown below

	// quotaq: t.ServerConfig wraps your asynq.Config (logger, error handler,
	// check intervals) so that a task put back is not reported as failed.
	srv := asynq.NewServerFromRedisClient(rdb, t.ServerConfig(asynq.Config{Concurrency: 20}))
	mux := asynq.NewServeMux()
	mux.Use(t.Middleware)                                                      // quotaq: ask the limiter before each task
	scheduler.RegisterHandlers(mux, limiter, scheduler.WithRelease(t.Release)) // quotaq: quota resets and adjustments
	mux.HandleFunc("email:send", sendEmail)                                    // your handlers, unchanged

	if err := srv.Start(mux); err != nil {
		return err
	}
	// quotaq: the cron schedule (quota resets); run it in one or in every
	// worker, each firing is enqueued once.
	sch := scheduler.New(asynq.NewClientFromRedisClient(rdb), sched, scheduler.WithLogger(logger))
	sch.Start()
	if err := scheduler.RecordNextResets(ctx, limiter, sched, time.Now()); err != nil {
		logger.Warn("could not record the next quota resets", "err", err)
	}

	<-ctx.Done()
	<-sch.Stop().Done()
	srv.Shutdown()
	return nil
}
