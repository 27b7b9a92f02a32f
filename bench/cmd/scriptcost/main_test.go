package main

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/bench/internal/harness"
)

// Every variant runs on a real redis-server with its keys and arguments,
// and quotaq's decisions admit (a smoke test: it measures nothing).
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
		run, err := v.load(context.Background(), rdb)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		for range 2 { // the second run finds the state the first wrote
			v2, err := run().Result()
			if err != nil && err != redis.Nil {
				t.Errorf("%s: %v", v.name, err)
			}
			reply, _ := v2.([]any)
			// quotaq's decisions admit: the common path is the one measured
			// (twelve integers a decision, allowed first)
			if strings.HasPrefix(v.name, "quotaq, ") {
				for i := 0; i < len(reply) || i == 0; i += 12 {
					if i >= len(reply) || reply[i] != int64(1) {
						t.Errorf("%s: decision %d not admitted: %v", v.name, i/11, reply)
					}
				}
			}
		}
	}
}
