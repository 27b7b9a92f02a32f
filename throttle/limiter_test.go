package throttle_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// setup returns a limiter on the shared real redis-server with a key prefix
// of its own, and the client under it.
func setup(t *testing.T, opts ...throttle.Option) (*throttle.Limiter, *redis.Client) {
	t.Helper()
	c, prefix := redistest.Client(t)
	return throttle.New(c, append([]throttle.Option{throttle.WithPrefix(prefix)}, opts...)...), c
}

// setupClock returns a limiter on miniredis whose clock the test sets.
func setupClock(t *testing.T, start time.Time, opts ...throttle.Option) (*throttle.Limiter, *miniredis.Miniredis, *redis.Client) {
	t.Helper()
	m := miniredis.RunT(t)
	m.SetTime(start)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return throttle.New(c, opts...), m, c
}

func mustAllowN(t *testing.T, l *throttle.Limiter, tenant string, n int64) throttle.Result {
	t.Helper()
	r, err := l.AllowN(context.Background(), tenant, n)
	if err != nil {
		t.Fatalf("AllowN(%q, %d): %v", tenant, n, err)
	}
	return r
}

func TestSmoke(t *testing.T) {
	t.Parallel()
	l, _ := setup(t, throttle.WithDefaultPolicy(throttle.Policy{Rate: 1, Burst: 3}))
	for i := 0; i < 3; i++ {
		r := mustAllowN(t, l, "acme", 1)
		t.Logf("%d: %+v", i, r)
		if !r.Allowed {
			t.Fatalf("call %d refused: %v", i, r)
		}
	}
	r := mustAllowN(t, l, "acme", 1)
	t.Logf("4: %+v", r)
	if r.Allowed {
		t.Fatalf("4th call admitted")
	}
}
