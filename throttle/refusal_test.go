package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/internal/wait"
	"github.com/quotaq/quotaq/throttle"
)

func setupCounted(t *testing.T, opts ...throttle.Option) (*throttle.Limiter, *redis.Client, *redistest.Runs) {
	t.Helper()
	c, prefix := redistest.Client(t)
	h := &redistest.Runs{}
	c.AddHook(h)
	return throttle.New(c, append([]throttle.Option{throttle.WithPrefix(prefix)}, opts...)...), c, h
}

// redisNow reads Redis's clock, the one the limiter counts with.
func redisNow(t *testing.T, c *redis.Client) time.Time {
	t.Helper()
	now, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now
}

// The fast paths must never admit more than the bucket holds: on a fixed
// clock exactly the burst, on a real clock at most burst + rate x elapsed.
func TestFastPathsNeverOverAdmit(t *testing.T) {
	t.Parallel()
	modes := []struct {
		name string
		opts []throttle.Option
	}{
		{"RefusalCache", []throttle.Option{throttle.WithRefusalCache(time.Second)}},
		{"Batching", []throttle.Option{throttle.WithBatching(0, 0)}},
		{"BatchingWithLinger", []throttle.Option{throttle.WithBatching(8, 200*time.Microsecond)}},
		{"Both", []throttle.Option{throttle.WithRefusalCache(time.Second), throttle.WithBatching(16, 0)}},
	}
	const tenants = 4
	hammer := func(t *testing.T, l *throttle.Limiter, n int64, callers, calls int) map[string]int64 {
		t.Helper()
		var mu sync.Mutex
		admitted := map[string]int64{}
		var wg sync.WaitGroup
		for g := range callers {
			wg.Go(func() {
				for i := range calls {
					id := "tenant-" + strconv.Itoa((g+i)%tenants)
					r, err := l.AllowN(context.Background(), id, n)
					if err != nil {
						t.Error(err)
						return
					}
					if r.Allowed {
						mu.Lock()
						admitted[id] += n
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		return admitted
	}
	for _, m := range modes {
		t.Run(m.name+"/FixedClock", func(t *testing.T) {
			t.Parallel()
			p := throttle.Policy{Rate: 10, Burst: 7}
			l, _ := setupClock(t, t0, append([]throttle.Option{throttle.WithDefaultPolicy(p)}, m.opts...)...)
			for id, got := range hammer(t, l, 1, 16, 25) { // miniredis is slow: fewer calls
				if got != p.Burst {
					t.Errorf("%s admitted %d tokens on a fixed clock, want exactly the burst %d", id, got, p.Burst)
				}
			}
		})
		t.Run(m.name+"/RealServer", func(t *testing.T) {
			t.Parallel()
			p := throttle.Policy{Rate: 50, Burst: 5}
			c, prefix := redistest.Client(t)
			l := throttle.New(c, append([]throttle.Option{throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(p)}, m.opts...)...)
			start := redisNow(t, c)
			admitted := hammer(t, l, 2, 32, 60)
			elapsed := redisNow(t, c).Sub(start)
			limit := p.Burst + int64(p.Rate*elapsed.Seconds()) + 1
			for id, got := range admitted {
				if got > limit {
					t.Errorf("%s admitted %d tokens in %s, the bucket allows at most %d", id, got, elapsed, limit)
				}
			}
			if len(admitted) != tenants {
				t.Errorf("admitted some tokens of %d tenants, want all %d: %v", len(admitted), tenants, admitted)
			}
		})
	}
}

func TestRefusalCacheAnswersLocally(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _, h := setupCounted(t, throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.01, Burst: 3}),
		throttle.WithRefusalCache(time.Minute))
	mustAllowN(t, l, "acme", 2) // 1 left, the next token in 100s
	first := mustAllowN(t, l, "acme", 2)
	if first.Allowed || first.Reason != throttle.ReasonRate {
		t.Fatalf("2 tokens of 1: %+v", first)
	}
	asked := h.N.Load()
	for i := range 50 {
		for _, n := range []int64{2, 3} {
			r := mustAllowN(t, l, "acme", n)
			if r.Allowed || r.Reason != throttle.ReasonRate || r.Tenant != "acme" {
				t.Fatalf("local answer %d for n=%d: %+v", i, n, r)
			}
			if r.RetryAfter <= 0 || r.RetryAfter > time.Minute {
				t.Fatalf("local RetryAfter %s, want in (0, 1m] (the cache's bound)", r.RetryAfter)
			}
		}
	}
	if got := h.N.Load() - asked; got != 0 {
		t.Fatalf("100 refusals known in advance asked Redis %d times, want 0", got)
	}
	// a smaller cost is not known refused: Redis is asked, and admits
	if r := mustAllowN(t, l, "acme", 1); !r.Allowed {
		t.Fatalf("1 token of 1: %+v", r)
	}
	if got := h.N.Load() - asked; got != 1 {
		t.Fatalf("a smaller cost asked Redis %d times, want 1", got)
	}
	// another tenant is not concerned
	if r := mustAllowN(t, l, "other", 3); !r.Allowed {
		t.Fatalf("another tenant: %+v", r)
	}
	// a multi-level decision involving the refused id is refused locally too
	before := h.N.Load()
	if r, err := l.AllowMulti(ctx, 2, "fresh", "acme"); err != nil || r.Allowed || r.Tenant != "acme" {
		t.Fatalf("AllowMulti through a refused id: %+v, %v", r, err)
	}
	if got := h.N.Load() - before; got != 0 {
		t.Fatalf("AllowMulti through a refused id asked Redis %d times, want 0", got)
	}
}

func TestRefusalCacheForgetsWhatThisLimiterGivesBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// one token per quota period, which only a reset ends: the second
	// decision is refused for good, until one of these calls gives back
	once := throttle.Policy{Rate: 1000, Burst: 10, Quota: 1}
	free := throttle.PerSecond(1000)
	tests := []struct {
		name     string
		own, def throttle.Policy // the tenant's own policy (none when zero) and the default
		giveBack func(l *throttle.Limiter) error
	}{
		{"Reset", once, free, func(l *throttle.Limiter) error { return l.Reset(ctx, "acme") }},
		{"SetPolicy", once, free, func(l *throttle.Limiter) error { return l.SetPolicy(ctx, "acme", free) }},
		{"DeletePolicy", once, free, func(l *throttle.Limiter) error { return l.DeletePolicy(ctx, "acme") }},
		{"CancelN", once, free, func(l *throttle.Limiter) error { return l.CancelN(ctx, "acme", 1) }},
		{"ResetQuota", once, free, func(l *throttle.Limiter) error { return l.ResetQuota(ctx, "acme") }},
		{"ResetAllQuotas", once, free, func(l *throttle.Limiter) error {
			_, err := l.ResetAllQuotas(ctx)
			return err
		}},
		{"SetDefaultPolicy", throttle.Policy{}, once, func(l *throttle.Limiter) error { return l.SetDefaultPolicy(ctx, free) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, _, h := setupCounted(t, throttle.WithDefaultPolicy(tt.def), throttle.WithRefusalCache(time.Hour))
			if tt.own != (throttle.Policy{}) {
				if err := l.SetPolicy(ctx, "acme", tt.own); err != nil {
					t.Fatal(err)
				}
			}
			mustAllowN(t, l, "acme", 1)
			if r := mustAllowN(t, l, "acme", 1); r.Allowed || r.Reason != throttle.ReasonQuota {
				t.Fatalf("second token: %+v", r)
			}
			asked := h.N.Load()
			if r := mustAllowN(t, l, "acme", 1); r.Allowed || h.N.Load() != asked {
				t.Fatalf("third token: %+v, asked Redis %d times, want a local refusal", r, h.N.Load()-asked)
			}
			if err := tt.giveBack(l); err != nil {
				t.Fatal(err)
			}
			if r := mustAllowN(t, l, "acme", 1); !r.Allowed {
				t.Fatalf("after %s on this limiter: still refused: %+v", tt.name, r)
			}
		})
	}
}

// Another process's Reset reaches a cached refusal within the cache's bound.
func TestRefusalCacheIsBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const bound = 50 * time.Millisecond
	c, prefix := redistest.Client(t)
	slow := throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.001, Burst: 1}) // a token every 1000s
	cached := throttle.New(c, throttle.WithPrefix(prefix), slow, throttle.WithRefusalCache(bound))
	other := throttle.New(c, throttle.WithPrefix(prefix), slow)
	mustAllowN(t, cached, "acme", 1)
	r := mustAllowN(t, cached, "acme", 1)
	if r.Allowed || r.RetryAfter < time.Minute {
		t.Fatalf("second token: %+v", r)
	}
	if r = mustAllowN(t, cached, "acme", 1); r.Allowed || r.RetryAfter > bound {
		t.Fatalf("local refusal: %+v, want RetryAfter within the bound %s", r, bound)
	}
	if err := other.Reset(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "another limiter's Reset to be seen (the cache's bound is "+bound.String()+")", func() bool {
		return mustAllowN(t, cached, "acme", 1).Allowed
	})
}

func TestRefusalCacheSkipsNeverAnswers(t *testing.T) {
	t.Parallel()
	l, _, h := setupCounted(t, throttle.WithDefaultPolicy(throttle.Policy{Rate: 1, Burst: 2}),
		throttle.WithRefusalCache(time.Minute))
	mustAllowN(t, l, "warm-up", 1) // loads the script
	h.N.Store(0)
	for i := range 3 {
		r := mustAllowN(t, l, "acme", 3) // above the burst: never
		if r.Allowed || r.Reason != throttle.ReasonCost || r.RetryAfter != -1 {
			t.Fatalf("call %d, cost above burst: %+v", i, r)
		}
	}
	if got := h.N.Load(); got != 3 {
		t.Fatalf("cost above burst asked Redis %d times in 3 calls, want 3 (not cached)", got)
	}
	if r := mustAllowN(t, l, "acme", 2); !r.Allowed {
		t.Fatalf("2 of 2 after the refusals: %+v", r)
	}
}

// Bad input is reported as without the cache, even for an id known refused.
func TestRefusalCacheReportsBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _, _ := setupCounted(t, throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.001, Burst: 1}),
		throttle.WithRefusalCache(time.Minute))
	mustAllowN(t, l, "acme", 1)
	if r := mustAllowN(t, l, "acme", 1); r.Allowed {
		t.Fatalf("second token: %+v", r)
	}
	for _, tt := range []struct {
		name string
		call func() error
		want error
	}{
		{"NoIDs", func() error { _, err := l.AllowMulti(ctx, 1); return err }, throttle.ErrInvalidTenant},
		{"NegativeCost", func() error { _, err := l.AllowN(ctx, "acme", -1); return err }, throttle.ErrInvalidCost},
		{"EmptyID", func() error { _, err := l.AllowMulti(ctx, 1, "acme", ""); return err }, throttle.ErrInvalidTenant},
		{"EmptyIDFirst", func() error { _, err := l.AllowMulti(ctx, 1, "", "acme"); return err }, throttle.ErrInvalidTenant},
		{"EmptyIDAlone", func() error { _, err := l.AllowN(ctx, "", 1); return err }, throttle.ErrInvalidTenant},
	} {
		if err := tt.call(); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func ExampleWithRefusalCache() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	// Refused tenants are refused locally for up to a second: a hot tenant
	// far over its limit costs Redis one decision per RetryAfter, not one per
	// job. Another process's Reset or SetPolicy reaches this one within 1s.
	l := throttle.New(rdb, throttle.WithRefusalCache(time.Second), throttle.WithBatching(0, 0))
	r, err := l.Allow(context.Background(), "acme")
	fmt.Println(r, err)
}
