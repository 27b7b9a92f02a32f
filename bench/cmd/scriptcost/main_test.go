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
			// (a record of little-endian doubles a decision, allowed first;
			// an array of them for several)
			if strings.HasPrefix(v.name, "quotaq, ") {
				var records []string
				switch r := v2.(type) {
				case string:
					records = []string{r}
				case []any:
					for _, x := range r {
						s, _ := x.(string)
						records = append(records, s)
					}
				}
				if want := len(v.keys) / 5; len(records) != want {
					t.Fatalf("%s: %d records (%T), want %d", v.name, len(records), v2, want)
				}
				for i, rec := range records {
					if len(rec) < 8 || len(rec)%8 != 0 {
						t.Fatalf("%s: decision %d answered %d bytes, want a record of doubles", v.name, i, len(rec))
					}
					if allowed := math.Float64frombits(binary.LittleEndian.Uint64([]byte(rec))); allowed != 1 {
						t.Errorf("%s: decision %d not admitted (allowed %v)", v.name, i, allowed)
					}
				}
			}
		}
	}
}
