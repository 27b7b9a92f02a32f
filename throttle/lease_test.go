package throttle_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// A tenant far under its limits is decided mostly from leases: far fewer
// scripts than decisions, and every decision admitted.
func TestLeasesSaveRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// a lease of 200ms takes the 200,000 tokens the bucket refills meanwhile
	l, _, h := setupCounted(t, throttle.WithLeases(200*time.Millisecond, 64),
		throttle.WithDefaultPolicy(throttle.PerSecond(1_000_000)))
	const calls = 500
	for i := range calls {
		res, err := l.Reserve(ctx, throttle.Request{IDs: []string{"busy"}, N: 1, Ticket: fmt.Sprint("job-", i)})
		if err != nil || !res.OK || res.Delay != 0 {
			t.Fatalf("call %d: %+v, %v", i, res, err)
		}
	}
	// leases of 1, 2, 4, ... 64 tokens: about calls/64 + 7 scripts when no
	// lease ends before it is used up (200ms: a slow machine may see some)
	if n := h.N.Load(); n == 0 || n > calls/8 {
		t.Fatalf("%d decisions sent %d scripts, want at most %d", calls, n, calls/8)
	}
	t.Logf("%d decisions, %d scripts", calls, h.N.Load())
}

// Callers that find a tenant's lease spent together, as a worker's
// goroutines do, wait for the one that asks Redis and spend from its new
// lease, instead of each asking.
// With a refusal cache too, the renewals are the same flights.
func TestLeaseRenewedOnceForCallersTogether(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts []throttle.Option
	}{
		{"Leases", nil},
		{"LeasesAndRefusalCache", []throttle.Option{throttle.WithRefusalCache(time.Second)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, _, h := setupCounted(t, append([]throttle.Option{throttle.WithLeases(time.Second, 64),
				throttle.WithDefaultPolicy(throttle.PerSecond(1_000_000))}, tt.opts...)...)
			const callers, each = 32, 50
			allowTogether(t, l, "hot", callers, each)
			// leases of 1, 2, 4, ... 64 tokens: about 1600/64 + 7 renewals;
			// each caller asking on its own when the lease is spent makes
			// hundreds
			if n := h.N.Load(); n > callers*each/32 {
				t.Fatalf("%d decisions sent %d scripts, want at most %d", callers*each, n, callers*each/32)
			}
			t.Logf("%d decisions, %d scripts", callers*each, h.N.Load())
		})
	}
}

// allowTogether makes each decisions on tenant from each of callers
// goroutines at once, and requires every one admitted.
func allowTogether(t *testing.T, l *throttle.Limiter, tenant string, callers, each int) {
	t.Helper()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range each {
				if r, err := l.Allow(context.Background(), tenant); err != nil || !r.Allowed {
					t.Errorf("Allow(%q): %+v, %v", tenant, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// A tenant whose renewals brought no lease (held, here) is not waited for;
// once it is leased tokens again, its renewals are shared again.
func TestLeaseRenewalsSharedAgainAfterALimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, c := miniClient(t, t0)
	h := &redistest.Runs{}
	c.AddHook(h)
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := throttle.New(c, throttle.WithDefaultPolicy(throttle.PerSecond(1_000_000)),
		throttle.WithLeases(time.Second, 64), throttle.WithLeaseClock(clock))
	if err := l.Hold(ctx, "t", time.Second); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r := mustAllowN(t, l, "t", 1); r.Allowed {
			t.Fatalf("admitted while held: %+v", r)
		}
	}
	// the pause has ended and its aux hash expired (a minute after it)
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	m.SetTime(now)
	m.FastForward(2 * time.Minute) // (miniredis's TTLs do not follow its TIME)
	before := h.N.Load()
	const callers, each = 32, 50
	allowTogether(t, l, "t", callers, each)
	// the first callers, arriving while the tenant is still "no lease"
	// to them, ask on their own (about one each); then one renewal at a
	// time: about 60 scripts, against ~180 if renewals stayed unshared
	if n := h.N.Load() - before; n > callers*each/16 {
		t.Fatalf("%d decisions sent %d scripts after the hold, want at most %d", callers*each, n, callers*each/16)
	}
}

// Leases are for tenants far under their limits only: a tenant with a
// quota, a held tenant, a decision that keeps its ticket and a tenant whose
// bucket cannot spare the refill of a lease each ask Redis every time.
func TestLeasesOnlyWhenSafe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name   string
		policy throttle.Policy
		setup  func(c *redis.Client, prefix string) error
		call   func(l *throttle.Limiter, i int) (bool, error)
	}{
		{"Quota", throttle.Policy{Rate: 1000, Burst: 1000, Quota: 100_000}, nil, allowOne},
		{"KeepTicket", throttle.PerSecond(1000), nil, func(l *throttle.Limiter, i int) (bool, error) {
			res, err := l.Reserve(ctx, throttle.Request{IDs: []string{"t"}, N: 1, Ticket: fmt.Sprint("shaped-", i), KeepTicket: true})
			return res.OK, err
		}},
		// 100 tokens, but not one refilled in a lease (an hour): none leased,
		// so a lease that runs out unspent cannot cost what takes so long back
		{"SlowRefill", throttle.Policy{Rate: 0.0002, Burst: 100}, nil, allowOne},
		// a bucket brought to 4 of its 10 tokens: leases would leave less than
		// half the burst
		{"NearItsLimit", throttle.Policy{Rate: 0.01, Burst: 10}, func(c *redis.Client, prefix string) error {
			_, err := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.01, Burst: 10})).AllowN(ctx, "t", 6)
			return err
		}, func(l *throttle.Limiter, i int) (bool, error) {
			ok, err := allowOne(l, i)
			return ok == (i < 4), err
		}},
		// a bucket of one token: nothing left to lease once it is taken
		{"AtItsLimit", throttle.Policy{Rate: 0.001, Burst: 1}, nil, func(l *throttle.Limiter, i int) (bool, error) {
			ok, err := allowOne(l, i)
			return ok == (i == 0), err
		}},
		{"Held", throttle.PerSecond(1000), func(c *redis.Client, prefix string) error {
			return throttle.New(c, throttle.WithPrefix(prefix)).Hold(ctx, "t", time.Hour)
		}, func(l *throttle.Limiter, i int) (bool, error) {
			ok, err := allowOne(l, i)
			return !ok, err // refused every time
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, prefix := redistest.Client(t)
			l := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithLeases(time.Hour, 64), throttle.WithDefaultPolicy(tt.policy))
			if tt.setup != nil {
				if err := tt.setup(c, prefix); err != nil {
					t.Fatal(err)
				}
			}
			h := &redistest.Runs{}
			c.AddHook(h)
			const calls = 20
			for i := range calls {
				if ok, err := tt.call(l, i); err != nil || !ok {
					t.Fatalf("call %d: %v, %v", i, ok, err)
				}
			}
			// every call asks Redis
			if n := h.N.Load(); n < calls {
				t.Fatalf("%d scripts for %d calls: some were answered from a lease", n, calls)
			}
		})
	}
}

func allowOne(l *throttle.Limiter, _ int) (bool, error) {
	r, err := l.Allow(context.Background(), "t")
	return r.Allowed, err
}

// A tenant that comes back a lease's ttl or more after its last decision
// is not leased tokens that would end unspent: the next decision asks Redis
// again. One that comes back sooner is.
func TestLeaseNotForTenantsThatComeBackLater(t *testing.T) {
	t.Parallel()
	const ttl = 100 * time.Millisecond
	now := t0
	m, c := miniClient(t, t0)
	h := &redistest.Runs{}
	c.AddHook(h)
	l := throttle.New(c, throttle.WithDefaultPolicy(throttle.PerSecond(1000)), throttle.WithLeases(ttl, 64),
		throttle.WithLeaseClock(func() time.Time { return now }))
	mustAllowN(t, l, "other", 1) // loads the script
	for i, step := range []struct {
		after time.Duration // since the decision before
		evals int64         // scripts this decision sends
	}{
		{0, 1},                      // the first: leased 1 token
		{ttl, 1},                    // came back after the lease ended: no lease asked for
		{ttl + time.Millisecond, 1}, // again: it would have ended unspent
		{time.Millisecond, 1},       // soon after: a lease
		{time.Millisecond, 0},       // spent from it
		{time.Millisecond, 1},       // spent: asks again, for 2
		{time.Millisecond, 0},       // from the new lease
		// a tenant decided every 30ms keeps its leases, though it asks
		// Redis less often than every ttl
		{30 * time.Millisecond, 0}, // the last of the lease of 2
		{30 * time.Millisecond, 1}, // spent: asks, for 4
		{30 * time.Millisecond, 0},
		{30 * time.Millisecond, 0},
		{30 * time.Millisecond, 0},
		{30 * time.Millisecond, 1}, // the lease ended: asks, 120ms after it last did
		{30 * time.Millisecond, 0}, // and was leased tokens again
		// a ttl later, but its last lease was used: leased again
		{ttl, 1},
		{time.Millisecond, 0},
	} {
		now = now.Add(step.after)
		m.SetTime(now)
		before := h.N.Load()
		if r := mustAllowN(t, l, "t", 1); !r.Allowed {
			t.Fatalf("decision %d refused: %+v", i, r)
		}
		if got := h.N.Load() - before; got != step.evals {
			t.Fatalf("decision %d (%s after the one before) sent %d scripts, want %d", i, step.after, got, step.evals)
		}
	}
}

// A Hold on the Limiter that holds a lease ends it at once; one on another
// process is seen when the lease ends.
func TestLeaseEndsOnHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := t0
	clock := func() time.Time { return now }
	m, c := miniClient(t, t0)
	opts := []throttle.Option{throttle.WithDefaultPolicy(throttle.PerSecond(1000)), throttle.WithLeases(10*time.Millisecond, 64), throttle.WithLeaseClock(clock)}
	a, b := throttle.New(c, opts...), throttle.New(c, opts...)
	lease := func(l *throttle.Limiter) {
		t.Helper()
		for range 3 { // the second decision leases two tokens
			if r := mustAllowN(t, l, "t", 1); !r.Allowed {
				t.Fatalf("before the hold: %+v", r)
			}
		}
	}
	lease(a)
	if err := a.Hold(ctx, "t", time.Minute); err != nil {
		t.Fatal(err)
	}
	if r := mustAllowN(t, a, "t", 1); r.Allowed || r.Reason != throttle.ReasonPaused {
		t.Fatalf("after its own Hold: %+v, want refused, paused", r)
	}
	// the pause and the aux hash that recorded it are over
	now = now.Add(5 * time.Minute)
	m.SetTime(now)
	m.FastForward(5 * time.Minute)
	lease(b)
	if err := a.Hold(ctx, "t", time.Minute); err != nil {
		t.Fatal(err)
	}
	if r := mustAllowN(t, b, "t", 1); !r.Allowed {
		t.Fatalf("another process's Hold, inside the lease: %+v, want admitted from the lease", r)
	}
	now = now.Add(10 * time.Millisecond) // the lease ends
	m.SetTime(now)
	if r := mustAllowN(t, b, "t", 1); r.Allowed || r.Reason != throttle.ReasonPaused {
		t.Fatalf("another process's Hold, after the lease: %+v, want refused, paused", r)
	}
}

// Several processes with leases, on one clock that the test moves (Redis's
// and the leases' alike): over any stretch of time, the tokens admitted are
// at most burst + rate × its length, as without leases.
func TestLeasesNeverOverAdmit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, trace := range []uint64{1, 2, 3, 4} {
		t.Run(fmt.Sprint("trace", trace), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(trace, 7))
			p := throttle.Policy{Rate: float64(1 + rng.IntN(2000)), Burst: int64(1 + rng.IntN(300))}
			ttl := time.Duration(1+rng.IntN(50)) * time.Millisecond
			now := t0
			m, c := miniClient(t, t0)
			var ls []*throttle.Limiter
			for range 3 {
				ls = append(ls, throttle.New(c, throttle.WithDefaultPolicy(p),
					throttle.WithLeases(ttl, int64(1+rng.IntN(100))), throttle.WithLeaseClock(func() time.Time { return now })))
			}
			h := &redistest.Runs{}
			c.AddHook(h)
			var admitted []time.Time
			const calls = 3000
			for range calls {
				if rng.IntN(4) == 0 {
					now = now.Add(time.Duration(rng.IntN(20_000)) * time.Microsecond)
					m.SetTime(now)
				}
				n := int64(1 + rng.IntN(3))
				r, err := ls[rng.IntN(len(ls))].AllowN(ctx, "t", n)
				if err != nil {
					t.Fatal(err)
				}
				if r.Allowed {
					for range n {
						admitted = append(admitted, now)
					}
				}
			}
			iv := time.Duration(math.Round(1e9 / p.Rate)) // the limiter's time per token
			for i := range admitted {
				for j := i; j < len(admitted); j++ {
					if j-i+1 > int(p.Burst)+int(admitted[j].Sub(admitted[i])/iv) {
						t.Fatalf("policy %v, leases of %s: %d tokens admitted within [%s, %s], the most is %d",
							p, ttl, j-i+1, admitted[i].Sub(t0), admitted[j].Sub(t0), p.Burst+int64(admitted[j].Sub(admitted[i])/iv))
					}
				}
			}
			if len(admitted) == 0 || h.N.Load() >= calls {
				t.Fatalf("%d admitted, %d scripts for %d decisions: want some admitted, some from leases", len(admitted), h.N.Load(), calls)
			}
			t.Logf("policy %v, leases of %s: %d tokens admitted, %d scripts for %d decisions", p, ttl, len(admitted), h.N.Load(), calls)
		})
	}
}

// Leases under real concurrency: many goroutines in two processes on a real
// redis-server admit at most burst + rate × elapsed.
func TestLeasesConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	p := throttle.Policy{Rate: 2000, Burst: 100}
	var ls []*throttle.Limiter
	for range 2 {
		ls = append(ls, throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(p), throttle.WithLeases(20*time.Millisecond, 32)))
	}
	var mu sync.Mutex
	var admitted int64
	start := time.Now()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for range 300 {
				r, err := ls[g%2].Allow(ctx, "t")
				if err != nil {
					t.Error(err)
					return
				}
				if r.Allowed {
					mu.Lock()
					admitted++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	most := p.Burst + int64(elapsed.Seconds()*p.Rate) + 1
	if admitted == 0 || admitted > most {
		t.Fatalf("admitted %d in %s, want 1..%d", admitted, elapsed, most)
	}
	t.Logf("admitted %d of 4800 in %s (at most %d)", admitted, elapsed, most)
}

// Tokens leased out and not spent yet keep the bucket from refilling over
// them: after a full refill, another process and the lease holder together
// get exactly the burst at one instant.
func TestLeaseHoldsBackTheRefill(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		ids  []string // the other process's decisions
	}{
		{"OneID", []string{"t"}},
		{"TwoIDs", []string{"t", "u"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := t0
			clock := func() time.Time { return now }
			m, c := miniClient(t, t0)
			p := throttle.Policy{Rate: 1000, Burst: 20}
			a := throttle.New(c, throttle.WithDefaultPolicy(p), throttle.WithLeases(time.Second, 64), throttle.WithLeaseClock(clock))
			b := throttle.New(c, throttle.WithDefaultPolicy(p))
			count := func(l *throttle.Limiter, calls int, ids ...string) (n int) {
				for range calls {
					r, err := l.AllowMulti(context.Background(), 1, ids...)
					if err != nil {
						t.Fatal(err)
					}
					if r.Allowed {
						n++
					}
				}
				return n
			}
			// a takes 1 + lease 1, spends it, 1 + lease 2, spends them, 1 + lease 4
			if got := count(a, 6, "t"); got != 6 {
				t.Fatalf("a admitted %d of 6", got)
			}
			// the bucket holds 10 and a holds 4 tokens; 10ms later the bucket
			// would be full
			now = now.Add(10 * time.Millisecond)
			m.SetTime(now)
			fromB := count(b, 40, tt.ids...)
			fromA := count(a, 4, "t") // from its lease, at the same instant
			if fromA != 4 || fromB+fromA != int(p.Burst) {
				t.Fatalf("at one instant after a full refill: b %d, a %d from its lease; want a 4 and %d in all", fromB, fromA, p.Burst)
			}
		})
	}
}

// A settlement that reaches Redis after the lease has ended there gives
// nothing back: by then the lease's tokens may have been counted again and
// leased to someone else. Here a's clock lags (its lease looks alive to it),
// the lease has ended on Redis's, and b holds a new lease when a settles.
func TestLeaseSettledOnlyWhileAlive(t *testing.T) {
	t.Parallel()
	m, c := miniClient(t, t0)
	p := throttle.Policy{Rate: 1000, Burst: 10}
	aNow, bNow := t0, t0
	a := throttle.New(c, throttle.WithDefaultPolicy(p), throttle.WithLeases(10*time.Millisecond, 64), throttle.WithLeaseClock(func() time.Time { return aNow }))
	b := throttle.New(c, throttle.WithDefaultPolicy(p), throttle.WithLeases(10*time.Millisecond, 64), throttle.WithLeaseClock(func() time.Time { return bNow }))
	other := throttle.New(c, throttle.WithDefaultPolicy(p))
	admit := func(l *throttle.Limiter, n int64, calls int) (got int64) {
		for range calls {
			if mustAllowN(t, l, "t", n).Allowed {
				got += n
			}
		}
		return got
	}
	// a: 1 + lease 1, spends it, 1 + lease 2 (held, unspent)
	if got := admit(a, 1, 3); got != 3 {
		t.Fatalf("a admitted %d of 3", got)
	}
	// 20ms later on Redis's clock (and b's): a's lease has ended there and
	// the bucket is full again; a's clock still says its lease is alive
	now := t0.Add(20 * time.Millisecond)
	m.SetTime(now)
	bNow = now
	// at this one instant: b takes 1 + lease 1, spends it, 1 + lease 2 and
	// spends those; a asks for 3, settling its old lease, and gets a new
	// one; someone else takes what is left; a spends its new lease
	total := admit(b, 1, 5) + admit(a, 3, 1) + admit(other, 1, 20) + admit(a, 1, 2)
	if total != p.Burst {
		t.Fatalf("%d tokens admitted at one instant, want the burst, %d", total, p.Burst)
	}
}
