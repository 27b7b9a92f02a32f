package main

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/bench/internal/harness"
)

// Every variant runs on a real redis-server with its keys and arguments
// (a smoke test: it measures nothing).
func TestVariantsRun(t *testing.T) {
	vs, err := variants("../../../throttle/lua")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := harness.StartServer("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	for _, v := range vs {
		for range 2 { // the second run finds the state the first wrote
			if err := redis.NewScript(v.src).Run(context.Background(), rdb, v.keys, v.args...).Err(); err != nil && err != redis.Nil {
				t.Errorf("%s: %v", v.name, err)
			}
		}
	}
}
