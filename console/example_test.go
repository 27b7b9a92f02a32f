package console_test

import (
	"log"
	"net/http"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/console"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// The page in a program that runs its own asynq server: the console's
// middleware goes after the throttler's, and the page is mounted under
// /ui/ of the program's own HTTP server (keep it on loopback, or behind an
// authenticating proxy).
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	limiter := throttle.New(rdb)
	throttler := worker.New(limiter, rdb)
	defer throttler.Close()

	c := console.New(limiter, rdb) // console.WithActions(true) adds the actions
	defer c.Close()

	mux := asynq.NewServeMux()
	mux.Use(throttler.Middleware, c.Middleware)
	// mux.Handle(...) your handlers

	http.Handle("/ui/", http.StripPrefix("/ui", c))
	go func() { log.Print(http.ListenAndServe("127.0.0.1:2112", nil)) }()

	srv := asynq.NewServerFromRedisClient(rdb, throttler.ServerConfig(asynq.Config{Concurrency: 10}))
	if err := srv.Run(mux); err != nil {
		log.Print(err)
	}
}
