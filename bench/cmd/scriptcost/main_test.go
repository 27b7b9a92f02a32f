package main

import (
	"context"
	"encoding/binary"
	"math"
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
			// quotaq's decisions admit: the common path is the one measured
			// (a record of twelve numbers a decision, allowed first)
			if strings.HasPrefix(v.name, "quotaq, ") {
				reply, _ := v2.(string)
				if len(reply) == 0 || len(reply)%96 != 0 {
					t.Fatalf("%s: a reply of %d bytes, want records of 96", v.name, len(reply))
				}
				for i := 0; i < len(reply); i += 96 {
					if allowed := math.Float64frombits(binary.LittleEndian.Uint64([]byte(reply[i:]))); allowed != 1 {
						t.Errorf("%s: decision %d not admitted (allowed %v)", v.name, i/96, allowed)
					}
				}
			}
		}
	}
}
