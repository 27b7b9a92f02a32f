package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// A producer shapes a tenant's large backlog at enqueue: each task is
// scheduled at its tenant's slot, and the workers' middleware (built with
// the same options) redeems the booking when it comes. (Compiled, not run:
// it needs a Redis.)
func ExampleShaper() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	limiter := throttle.New(rdb)
	client := asynq.NewClientFromRedisClient(rdb)
	defer client.Close()

	// The options the workers' Throttler has, so both charge the same
	// tenant the same tokens; WithMaxWait here caps how far ahead to book.
	s := worker.NewShaper(limiter, client, worker.WithMaxWait(2*time.Hour))
	for i := range 20_000 {
		task := asynq.NewTaskWithHeaders("report:build", fmt.Appendf(nil, `{"n":%d}`, i),
			map[string]string{worker.TenantHeader: "acme"})
		_, err := s.Enqueue(context.Background(), task, asynq.Queue("reports"))
		if errors.Is(err, worker.ErrMaxWait) {
			log.Printf("acme's backlog is over two hours deep; %d tasks enqueued, the rest later", i)
			break
		}
		if err != nil {
			log.Fatal(err)
		}
	}
}
