package worker_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// A server whose tasks are throttled per tenant. (Compiled, not run: it
// needs a Redis. examples/existing-worker runs the same, with the quota
// scheduler.)
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	// Leases, as quotaq-worker has them (--lease 100ms): a tenant far under
	// its limits is admitted without a round trip per task, never past its
	// policy.
	limiter := throttle.New(rdb, throttle.WithLeases(100*time.Millisecond, 0))
	metrics, err := worker.NewMetrics(prometheus.DefaultRegisterer, false)
	if err != nil {
		log.Fatal(err)
	}
	t, err := worker.NewChecked(limiter, rdb, worker.WithMetrics(metrics), worker.WithMaxWait(time.Hour))
	if err != nil {
		log.Fatal(err) // an asynq version the Throttler is not tested with
	}
	defer t.Close()

	srv := asynq.NewServerFromRedisClient(rdb, t.ServerConfig(asynq.Config{Concurrency: 20}))
	mux := asynq.NewServeMux()
	mux.Use(t.Middleware)
	mux.Handle(worker.TypeHTTPCall, worker.NewHTTPCallHandler(nil))
	mux.HandleFunc("report:build", func(ctx context.Context, task *asynq.Task) error {
		// The task's tenant is its "tenant" header; it got here because its
		// tenant had a token. An upstream that says 429 holds the tenant:
		if upstreamSaidSlowDown := false; upstreamSaidSlowDown {
			return worker.RetryAfter(30*time.Second, errors.New("429 from the reports API"))
		}
		return nil
	})
	if err := srv.Run(mux); err != nil {
		log.Fatal(err)
	}
}
