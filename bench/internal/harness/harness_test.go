package harness

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestReadCountersCountsScripts(t *testing.T) {
	ctx := context.Background()
	srv, err := StartServer("")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer c.Close()
	if err := ResetStats(ctx, c); err != nil {
		t.Fatal(err)
	}
	s := redis.NewScript("redis.call('SET', KEYS[1], 'x'); return 1")
	for range 7 {
		if err := s.Run(ctx, c, []string{"k"}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	k, err := ReadCounters(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	// the first Run's EVALSHA fails (NOSCRIPT) and falls back to EVAL
	if calls, _ := k.Scripts(); calls != 8 {
		t.Fatalf("script calls %d, want 8 (7 EVALSHA + 1 EVAL): %v", calls, k.Calls)
	}
	if k.Calls["set"] != 7 {
		t.Fatalf("SET calls inside the scripts %d, want 7: %v", k.Calls["set"], k.Calls)
	}
	if k.CPUUsec <= 0 || k.AllCalls() < 15 {
		t.Fatalf("CPU %d µs, all calls %d: %+v", k.CPUUsec, k.AllCalls(), k)
	}
	if v := Version(ctx, c); v == "" {
		t.Fatal("no redis_version")
	}
}

func TestRunCountsEveryCall(t *testing.T) {
	var made atomic.Int64
	o := Run(context.Background(), 4, 20*time.Millisecond, func(_ context.Context, g, i int) (bool, error) {
		made.Add(1)
		switch {
		case i%3 == 0:
			return false, errors.New("refused by Redis")
		case i%3 == 1:
			return true, nil
		}
		return false, nil
	})
	if o.Calls != made.Load() || o.Calls == 0 {
		t.Fatalf("Outcome counts %d calls, fn ran %d times", o.Calls, made.Load())
	}
	if o.Allowed+o.Errors > o.Calls || o.Errors == 0 || o.Allowed == 0 {
		t.Fatalf("allowed %d, errors %d of %d calls", o.Allowed, o.Errors, o.Calls)
	}
	if o.P50 > o.P99 || o.Elapsed <= 0 {
		t.Fatalf("p50 %s, p99 %s, elapsed %s", o.P50, o.P99, o.Elapsed)
	}
}

func TestMicros(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{{0, "<1"}, {999 * time.Nanosecond, "<1"}, {time.Microsecond, "1"}, {1500 * time.Microsecond, "1500"}} {
		if got := Micros(tt.d); got != tt.want {
			t.Errorf("Micros(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
