package throttle_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/wait"
	"github.com/quotaq/quotaq/throttle"
)

// With Redis gone, the first decision waits for the client's dial and
// retries; the next ones, within the breaker's window, are answered at once
// (failing open or closed as set, and saying Redis is unavailable); once
// Redis is back, the first decision after the window asks it and closes the
// breaker.
func TestBreakerAnswersAtOnceWhileRedisIsAway(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := miniredis.RunT(t)
	addr := m.Addr()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: 2,
		MinRetryBackoff: 100 * time.Millisecond, MaxRetryBackoff: 100 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	for _, open := range []bool{false, true} {
		l := throttle.New(c, throttle.WithFailOpen(open), throttle.WithBreaker(time.Hour))
		if r, err := l.Allow(ctx, "acme"); err != nil || !r.Allowed {
			t.Fatalf("with Redis: %+v %v", r, err)
		}
	}
	m.Close()

	l := throttle.New(c, throttle.WithFailOpen(true), throttle.WithBreaker(300*time.Millisecond))
	start := time.Now()
	if r, err := l.Allow(ctx, "acme"); !errors.Is(err, throttle.ErrUnavailable) || !r.Allowed {
		t.Fatalf("Redis away, failing open: %+v %v", r, err)
	}
	first := time.Since(start)
	start = time.Now()
	for range 20 {
		if r, err := l.Allow(ctx, "acme"); !errors.Is(err, throttle.ErrUnavailable) || !r.Allowed {
			t.Fatalf("breaker open, failing open: %+v %v", r, err)
		}
	}
	if rest := time.Since(start); rest >= first {
		t.Fatalf("20 decisions with the breaker open took %s, the first alone %s: they asked Redis", rest, first)
	}

	// Redis back on the same address: after the window, decisions ask it
	m2 := miniredis.NewMiniRedis()
	if err := m2.StartAddr(addr); err != nil {
		t.Fatalf("restart on %s: %v", addr, err)
	}
	t.Cleanup(m2.Close)
	wait.For(t, 5*time.Second, "decisions to reach Redis again", func() bool {
		r, err := l.Allow(ctx, "acme")
		return err == nil && r.Allowed
	})
}
