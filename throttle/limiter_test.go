package throttle_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
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

// setupClock returns a limiter on miniredis, whose clock (TIME, also inside
// Lua) the test sets, so no test waits for time to pass.
func setupClock(t *testing.T, start time.Time, opts ...throttle.Option) (*throttle.Limiter, *miniredis.Miniredis) {
	t.Helper()
	m, c := miniClient(t, start)
	return throttle.New(c, opts...), m
}

// miniClient starts a miniredis whose clock reads start (unless zero) and
// returns it with a client; both are closed when tb ends. Fuzz targets share
// one for all their inputs.
func miniClient(tb testing.TB, start time.Time) (*miniredis.Miniredis, *redis.Client) {
	tb.Helper()
	m := miniredis.RunT(tb)
	if !start.IsZero() {
		m.SetTime(start)
	}
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	tb.Cleanup(func() { _ = c.Close() })
	return m, c
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func mustAllowN(t *testing.T, l *throttle.Limiter, tenant string, n int64) throttle.Result {
	t.Helper()
	r, err := l.AllowN(context.Background(), tenant, n)
	if err != nil {
		t.Fatalf("AllowN(%q, %d): %v", tenant, n, err)
	}
	return r
}

// keysWith returns the keys under prefix.
func keysWith(t *testing.T, c *redis.Client, prefix string) []string {
	t.Helper()
	ks, err := c.Keys(context.Background(), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestTokenBucket(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	type step struct {
		at        time.Duration // since t0
		n         int64
		allowed   bool
		remaining int64
		retry     time.Duration // when refused
	}
	tests := []struct {
		name   string
		policy throttle.Policy
		steps  []step
	}{
		{"BurstThenRefill", throttle.Policy{Rate: 10, Burst: 3}, []step{
			{0, 1, true, 2, 0}, {0, 1, true, 1, 0}, {0, 1, true, 0, 0},
			{0, 1, false, 0, 100 * time.Millisecond},
			{50 * time.Millisecond, 1, false, 0, 50 * time.Millisecond},
			{100 * time.Millisecond, 1, true, 0, 0},
			{400 * time.Millisecond, 3, true, 0, 0},
		}},
		{"CostAboveBurstNeverAllowed", throttle.Policy{Rate: 10, Burst: 3}, []step{
			{0, 4, false, 3, -1}, {0, 3, true, 0, 0},
		}},
		{"RefusedCallConsumesNothing", throttle.Policy{Rate: 1, Burst: 5}, []step{
			{0, 4, true, 1, 0}, {0, 2, false, 1, time.Second}, {0, 1, true, 0, 0},
		}},
		{"FullBucketCapsAtBurst", throttle.Policy{Rate: 100, Burst: 2}, []step{
			{0, 2, true, 0, 0}, {time.Hour, 2, true, 0, 0}, {time.Hour, 1, false, 0, 10 * time.Millisecond},
		}},
		{"SlowRate", throttle.Policy{Rate: 0.5, Burst: 1}, []step{
			{0, 1, true, 0, 0}, {time.Second, 1, false, 0, time.Second}, {2 * time.Second, 1, true, 0, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, m := setupClock(t, t0, throttle.WithDefaultPolicy(tt.policy))
			for i, s := range tt.steps {
				m.SetTime(t0.Add(s.at))
				r := mustAllowN(t, l, "acme", s.n)
				if r.Allowed != s.allowed || r.Remaining != s.remaining {
					t.Fatalf("step %d (%+v): got %+v", i, s, r)
				}
				if !s.allowed && r.RetryAfter != s.retry {
					t.Fatalf("step %d: RetryAfter %s, want %s", i, r.RetryAfter, s.retry)
				}
				if s.allowed && r.RetryAfter != 0 {
					t.Fatalf("step %d: allowed with RetryAfter %s", i, r.RetryAfter)
				}
			}
		})
	}
	_ = ctx
}

func TestResultResetAfterIsTimeUntilFull(t *testing.T) {
	t.Parallel()
	l, m := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 4, Burst: 8}))
	r := mustAllowN(t, l, "acme", 3)
	if r.ResetAfter != 750*time.Millisecond {
		t.Fatalf("ResetAfter %s, want 750ms", r.ResetAfter)
	}
	m.SetTime(t0.Add(500 * time.Millisecond))
	p, err := l.Peek(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if p.ResetAfter != 250*time.Millisecond || p.Remaining != 7 || !p.Allowed {
		t.Fatalf("Peek after 500ms: %+v", p)
	}
}

func TestPeekConsumesNothing(t *testing.T) {
	t.Parallel()
	l, _ := setup(t, throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.01, Burst: 2}))
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		r, err := l.Peek(ctx, "acme")
		if err != nil || !r.Allowed || r.Remaining != 2 {
			t.Fatalf("Peek %d: %+v, %v", i, r, err)
		}
	}
	mustAllowN(t, l, "acme", 2)
	r, err := l.Peek(ctx, "acme")
	if err != nil || r.Allowed || r.Remaining != 0 || r.RetryAfter <= 0 {
		t.Fatalf("Peek on empty bucket: %+v, %v", r, err)
	}
}

func TestInvalidInputWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	l := throttle.New(c, throttle.WithPrefix(prefix))
	badTenants := []string{"", strings.Repeat("x", 129), "a\nb", "tab\there", "nul\x00", "\x7f", "bad\xffutf8"}
	for _, id := range badTenants {
		if _, err := l.Allow(ctx, id); !errors.Is(err, throttle.ErrInvalidTenant) {
			t.Errorf("Allow(%q): err %v, want ErrInvalidTenant", id, err)
		}
		if err := l.SetPolicy(ctx, id, throttle.PerSecond(1)); !errors.Is(err, throttle.ErrInvalidTenant) {
			t.Errorf("SetPolicy(%q): err %v, want ErrInvalidTenant", id, err)
		}
		if err := l.Hold(ctx, id, time.Second); !errors.Is(err, throttle.ErrInvalidTenant) {
			t.Errorf("Hold(%q): err %v, want ErrInvalidTenant", id, err)
		}
	}
	if _, err := l.AllowN(ctx, "ok", -1); !errors.Is(err, throttle.ErrInvalidCost) {
		t.Errorf("AllowN(-1): %v, want ErrInvalidCost", err)
	}
	if _, err := l.AllowMulti(ctx, 1, "ok", ""); !errors.Is(err, throttle.ErrInvalidTenant) {
		t.Errorf("AllowMulti with an empty id: %v", err)
	}
	for _, p := range badPolicies {
		if err := l.SetPolicy(ctx, "ok", p); !errors.Is(err, throttle.ErrInvalidPolicy) {
			t.Errorf("SetPolicy(%+v): %v, want ErrInvalidPolicy", p, err)
		}
		if err := l.SetDefaultPolicy(ctx, p); !errors.Is(err, throttle.ErrInvalidPolicy) {
			t.Errorf("SetDefaultPolicy(%+v): %v, want ErrInvalidPolicy", p, err)
		}
	}
	if ks := keysWith(t, c, prefix); len(ks) != 0 {
		t.Fatalf("invalid input wrote keys: %v", ks)
	}
	// an invalid default policy refuses decisions with a clear error
	bad := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: -1, Burst: 1}))
	if _, err := bad.Allow(ctx, "ok"); !errors.Is(err, throttle.ErrInvalidPolicy) {
		t.Fatalf("decision under an invalid default policy: %v", err)
	}
	if ks := keysWith(t, c, prefix); len(ks) != 0 {
		t.Fatalf("invalid default policy wrote keys: %v", ks)
	}
}

func TestPolicyChangeTakesEffectOnNextDecision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	a := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.01, Burst: 1}))
	b := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.01, Burst: 1}))
	mustAllowN(t, a, "acme", 1)
	if r := mustAllowN(t, b, "acme", 1); r.Allowed {
		t.Fatalf("burst 1 admitted twice")
	}
	// another process raises acme's burst: b's very next decision sees it
	if err := a.SetPolicy(ctx, "acme", throttle.Policy{Rate: 0.01, Burst: 5}); err != nil {
		t.Fatal(err)
	}
	r := mustAllowN(t, b, "acme", 4)
	if !r.Allowed || r.Remaining != 0 {
		t.Fatalf("after the burst was raised to 5: %+v", r)
	}
	p, explicit, err := b.GetPolicy(ctx, "acme")
	if err != nil || !explicit || p.Burst != 5 {
		t.Fatalf("GetPolicy: %+v %v %v", p, explicit, err)
	}
	ids, err := b.Tenants(ctx)
	if err != nil || len(ids) != 1 || ids[0] != "acme" {
		t.Fatalf("Tenants: %v %v", ids, err)
	}
	if err := b.DeletePolicy(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, explicit, _ := b.GetPolicy(ctx, "acme"); explicit {
		t.Fatal("policy still explicit after DeletePolicy")
	}
}

func TestStoredDefaultPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	a := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.01, Burst: 1}))
	b := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.01, Burst: 1}),
		throttle.WithPolicyRefresh(0))
	if err := a.SetDefaultPolicy(ctx, throttle.Policy{Rate: 0.01, Burst: 3}); err != nil {
		t.Fatal(err)
	}
	for _, l := range []*throttle.Limiter{a, b} {
		p, err := l.DefaultPolicy(ctx)
		if err != nil || p.Burst != 3 {
			t.Fatalf("DefaultPolicy: %+v %v", p, err)
		}
	}
	if r := mustAllowN(t, b, "newcomer", 3); !r.Allowed {
		t.Fatalf("stored default (burst 3) not used: %+v", r)
	}
}

func TestConcurrentCallersAdmitExactlyTheBurst(t *testing.T) {
	t.Parallel()
	for _, algo := range throttle.Algorithms() {
		t.Run(algo.String(), func(t *testing.T) {
			t.Parallel()
			const burst, clients, goroutines, calls = 100, 4, 16, 20 // 1,280 calls for 100 tokens
			prefix := redistest.Prefix(t)
			var admitted, refused int64
			var mu sync.Mutex
			var wg sync.WaitGroup
			for c := 0; c < clients; c++ {
				rc := redis.NewClient(&redis.Options{Addr: redistest.Addr(t)})
				defer rc.Close()
				l := throttle.New(rc, throttle.WithPrefix(prefix), throttle.WithAlgorithm(algo),
					throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.001, Burst: burst}))
				for g := 0; g < goroutines; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < calls; i++ {
							r, err := l.Allow(context.Background(), "hot")
							mu.Lock()
							if err != nil {
								t.Error(err)
							} else if r.Allowed {
								admitted++
							} else {
								refused++
							}
							mu.Unlock()
						}
					}()
				}
			}
			wg.Wait()
			if admitted != burst || admitted+refused != clients*goroutines*calls {
				t.Fatalf("admitted %d, refused %d; want exactly %d admitted", admitted, refused, burst)
			}
		})
	}
}

func TestFailOpenOrClosed(t *testing.T) {
	t.Parallel()
	port, err := redistest.FreePort() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	for _, open := range []bool{true, false} {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
		l := throttle.New(c, throttle.WithFailOpen(open))
		r, err := l.Allow(context.Background(), "acme")
		if !errors.Is(err, throttle.ErrUnavailable) {
			t.Fatalf("failOpen=%v: err %v, want ErrUnavailable", open, err)
		}
		if r.Allowed != open {
			t.Fatalf("failOpen=%v: Allowed=%v", open, r.Allowed)
		}
		res, err := l.ReserveN(context.Background(), "acme", 1, 0)
		if err == nil || res.OK != open {
			t.Fatalf("ReserveN failOpen=%v: %+v %v", open, res, err)
		}
		c.Close()
	}
}
