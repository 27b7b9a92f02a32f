package throttle

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/internal/wait"
)

// gate holds every decision script until it is opened, and counts them.
type gate struct {
	open  chan struct{}
	evals atomic.Int64
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if redistest.IsRun(cmd.Name()) {
			g.evals.Add(1)
			<-g.open
		}
		return next(ctx, cmd)
	}
}

func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Decisions of an id whose refusal expired wait for the one asking Redis and
// share its refusal, instead of all asking at once; with leases too, the
// flight they wait for is the same.
func TestRefusalCacheCoalescesAnExpiredRefusal(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts []Option
	}{
		{"RefusalCache", nil},
		{"RefusalCacheAndLeases", []Option{WithLeases(time.Second, 64)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			coalescesAnExpiredRefusal(t, tt.opts...)
		})
	}
}

func coalescesAnExpiredRefusal(t *testing.T, opts ...Option) {
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	// a token every 1000s; this Limiter's clock moves past the refusal's
	// expiry, Redis's does not
	var skew atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	opts = append([]Option{WithPrefix(prefix), WithDefaultPolicy(Policy{Rate: 0.001, Burst: 1}), WithRefusalCache(time.Hour)}, opts...)
	l := New(c, append(opts, WithLeaseClock(clock))...)
	if r, err := l.Allow(ctx, "acme"); err != nil || !r.Allowed {
		t.Fatalf("first token: %+v, %v", r, err)
	}
	r, err := l.Allow(ctx, "acme")
	if err != nil || r.Allowed || r.RetryAfter < 900*time.Second {
		t.Fatalf("second token: %+v, %v; want refused for about 1000s", r, err)
	}
	skew.Store(int64(r.RetryAfter + time.Second)) // the refusal has expired here
	const callers = 20
	g, results := allowTogether(t, l, c, callers)
	for r := range results {
		if r.Allowed || r.Reason != ReasonRate {
			t.Fatalf("a caller got %+v, want the shared refusal", r)
		}
	}
	if n := g.evals.Load(); n != 1 {
		t.Fatalf("%d callers sent %d scripts, want 1", callers, n)
	}
}

// waiting returns how many decisions wait for id's flight (0: none).
func (c *local) waiting(id string) int64 {
	s := c.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[id]; e != nil && e.flight != nil {
		return e.flight.waiting
	}
	return 0
}

// replyGate lets the first script sent after armed run, and holds its reply
// until open is closed.
type replyGate struct {
	armed, ran atomic.Bool
	open       chan struct{}
}

func (g *replyGate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *replyGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if (redistest.IsRun(cmd.Name())) && g.armed.CompareAndSwap(true, false) {
			g.ran.Store(true)
			<-g.open
		}
		return err
	}
}

func (g *replyGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// What Redis answered before this Limiter gave a tenant's tokens back or
// held it is not kept: the refusal may predate the Reset, the lease the
// Hold. (Here another decision has made the tenant's local state anew
// before the stale answer arrives.)
func TestAnswerSentBeforeAForgetIsNotKept(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		opts   []Option
		before func(l *Limiter) // brings the tenant to the gated decision
		forget func(l *Limiter) error
		want   func(r Result) bool // the decision after
	}{
		{"RefusalBeforeReset",
			[]Option{WithDefaultPolicy(Policy{Rate: 0.001, Burst: 2}), WithRefusalCache(time.Hour)},
			func(l *Limiter) { _, _ = l.AllowN(ctx, "t", 2) }, // the gated decision is refused
			func(l *Limiter) error { return l.Reset(ctx, "t") },
			func(r Result) bool { return r.Allowed }},
		{"LeaseBeforeHold",
			[]Option{WithDefaultPolicy(PerSecond(1000)), WithLeases(time.Minute, 64)},
			func(l *Limiter) { _, _ = l.Allow(ctx, "t"); _, _ = l.Allow(ctx, "t") }, // the gated decision renews a lease
			func(l *Limiter) error { return l.Hold(ctx, "t", time.Minute) },
			func(r Result) bool { return !r.Allowed && r.Reason == ReasonPaused }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, prefix := redistest.Client(t)
			l := New(c, append([]Option{WithPrefix(prefix)}, tt.opts...)...)
			tt.before(l)
			g := &replyGate{open: make(chan struct{})}
			c.AddHook(g)
			g.armed.Store(true)
			done := make(chan Result)
			go func() {
				r, err := l.Allow(ctx, "t")
				if err != nil {
					t.Error(err)
				}
				done <- r
			}()
			wait.For(t, 10*time.Second, "the gated decision to run", g.ran.Load)
			if err := tt.forget(l); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Allow(ctx, "t"); err != nil { // decided anew: the tenant's state is made again
				t.Fatal(err)
			}
			close(g.open)
			<-done
			if r, err := l.Allow(ctx, "t"); err != nil || !tt.want(r) {
				t.Fatalf("after the stale answer: %+v, %v", r, err)
			}
		})
	}
}

// A tenant over its limit whose refusal ends gets a token now and then:
// the decision that finds it does not set every waiting decision loose on
// Redis at once; they keep going one flight at a time, and the next
// refusal answers the rest here.
func TestRefusalCacheCoalescesAfterAnAdmission(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	var skew atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	p := Policy{Rate: 0.001, Burst: 2} // a token every 1000 s
	l := New(c, WithPrefix(prefix), WithDefaultPolicy(p), WithRefusalCache(time.Hour), WithLeaseClock(clock))
	for range 2 {
		if r, err := l.Allow(ctx, "acme"); err != nil || !r.Allowed {
			t.Fatalf("a token of the burst: %+v, %v", r, err)
		}
	}
	r, err := l.Allow(ctx, "acme")
	if err != nil || r.Allowed {
		t.Fatalf("past the burst: %+v, %v; want refused", r, err)
	}
	// another process gives one token back: this Limiter still knows the
	// refusal, until its clock passes it
	if err := New(c, WithPrefix(prefix), WithDefaultPolicy(p)).CancelN(ctx, "acme", 1); err != nil {
		t.Fatal(err)
	}
	skew.Store(int64(r.RetryAfter + time.Second))
	const callers = 20
	g, results := allowTogether(t, l, c, callers)
	n := 0
	for r := range results {
		if r.Allowed {
			n++
		}
	}
	// the leader takes the token, the next flight is refused, and that
	// refusal answers the other 18
	if n != 1 || g.evals.Load() != 2 {
		t.Fatalf("%d callers: %d admitted with %d scripts, want 1 admitted with 2", callers, n, g.evals.Load())
	}
}

// allowTogether has callers decide on "acme" at once through l while a
// gate on c holds the first script sent: it waits until that one caller
// leads and the others wait for its flight, lets it through, and returns
// the gate (its count of scripts) and every caller's result.
func allowTogether(t *testing.T, l *Limiter, c *redis.Client, callers int) (*gate, <-chan Result) {
	t.Helper()
	g := &gate{open: make(chan struct{})}
	c.AddHook(g)
	results := make(chan Result, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			r, err := l.Allow(context.Background(), "acme")
			if err != nil {
				t.Error(err)
			}
			results <- r
		})
	}
	wait.For(t, 10*time.Second, "one script sent, the other callers waiting for it", func() bool {
		return l.local.waiting("acme") == int64(callers-1) && g.evals.Load() == 1
	})
	close(g.open)
	wg.Wait()
	close(results)
	return g, results
}
