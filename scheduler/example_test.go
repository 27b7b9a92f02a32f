package scheduler_test

import (
	"log"
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/scheduler"
	"github.com/quotaq/quotaq/throttle"
)

// A worker process that runs a schedule and carries out its tasks. Every
// replica may run the same: each firing is enqueued once.
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	limiter := throttle.New(rdb)

	sched, err := scheduler.LoadFile("examples/schedule.yaml")
	if err != nil {
		log.Fatal(err) // names the entry, the field and the line
	}
	opts := []scheduler.Option{
		scheduler.WithLogger(slog.Default()),
		scheduler.WithQueue("quotaq"),
	}

	client := asynq.NewClientFromRedisClient(rdb)
	s := scheduler.New(client, sched, opts...)
	s.Start()
	defer func() { <-s.Stop().Done() }()

	mux := asynq.NewServeMux()
	// The limiter the worker's middleware uses: its next decision sees the change.
	scheduler.RegisterHandlers(mux, limiter, opts...)
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Queues: map[string]int{"quotaq": 1, "default": 5}})
	if err := srv.Run(mux); err != nil {
		log.Fatal(err)
	}
}

// Trigger a reset by hand: the same task a schedule entry enqueues.
func ExampleNewResetTask() {
	task, err := scheduler.NewResetTask(scheduler.Reset{Tenants: []string{"acme"}})
	if err != nil {
		log.Fatal(err)
	}
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: "127.0.0.1:6379"})
	defer client.Close()
	if _, err := client.Enqueue(task, asynq.Queue("quotaq")); err != nil {
		log.Fatal(err)
	}
}
