package throttle_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// A batched decision answers exactly what a lone one does.
func TestBatchingAnswersLikeSingleDecisions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	type step struct {
		at   time.Duration
		call func(l *throttle.Limiter) (any, error)
	}
	allow := func(n int64) func(l *throttle.Limiter) (any, error) {
		return func(l *throttle.Limiter) (any, error) { return l.AllowN(ctx, "acme", n) }
	}
	steps := []step{
		{0, allow(2)}, {0, allow(2)}, {0, allow(5)},
		{0, func(l *throttle.Limiter) (any, error) { return l.Peek(ctx, "acme") }},
		{0, func(l *throttle.Limiter) (any, error) { return l.ReserveN(ctx, "acme", 2, 0) }},
		{0, func(l *throttle.Limiter) (any, error) {
			return l.Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1, Ticket: "job-1"})
		}},
		{300 * time.Millisecond, func(l *throttle.Limiter) (any, error) {
			return l.Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1, Ticket: "job-1"})
		}},
		{time.Second, func(l *throttle.Limiter) (any, error) { return l.AllowMulti(ctx, 1, "acme", "upstream") }},
		{time.Second, func(l *throttle.Limiter) (any, error) { return nil, l.CancelN(ctx, "acme", 1) }},
		{2 * time.Second, allow(4)},
	}
	policy := throttle.WithDefaultPolicy(throttle.Policy{Rate: 4, Burst: 4, Quota: 9})
	single, ms := setupClock(t, t0, policy)
	batched, mb := setupClock(t, t0, policy, throttle.WithBatching(0, 0))
	for i, s := range steps {
		ms.SetTime(t0.Add(s.at))
		mb.SetTime(t0.Add(s.at))
		want, werr := s.call(single)
		got, gerr := s.call(batched)
		if got != want || (werr == nil) != (gerr == nil) {
			t.Fatalf("step %d: batched %+v, %v; single %+v, %v", i, got, gerr, want, werr)
		}
	}
}

// Decisions queued while a pipeline is in flight leave together in the next.
func TestBatchingSharesRoundTrips(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	h := &redistest.Runs{}
	c.AddHook(h)
	l := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithBatching(0, 0),
		throttle.WithDefaultPolicy(throttle.PerSecond(1_000_000)))
	mustAllowN(t, l, "warm-up", 1) // loads the script
	h.N.Store(0)
	h.Pipelines.Store(0)
	const callers, calls = 64, 40
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for i := range calls {
				if r, err := l.Allow(context.Background(), "tenant-"+string(rune('a'+(g+i)%26))); err != nil || !r.Allowed {
					t.Errorf("caller %d call %d: %+v, %v", g, i, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	// decisions made together share one script run
	if got := h.N.Load(); got == 0 || got >= callers*calls {
		t.Fatalf("%d decisions sent %d scripts, want fewer (shared runs)", callers*calls, got)
	}
	if p := h.Pipelines.Load(); p >= callers*calls {
		t.Fatalf("%d decisions of %d callers took %d round trips: no batch formed", callers*calls, callers, p)
	}
	t.Logf("%d decisions in %d round trips, %d script runs", callers*calls, h.Pipelines.Load(), h.N.Load())
}

// Linger waits for a batch to fill: a full batch leaves at once.
func TestBatchingLingerSendsFullBatches(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	h := &redistest.Runs{}
	c.AddHook(h)
	const size = 4
	// an hour of linger: only a full batch can leave in time for the test
	l := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithBatching(size, time.Hour),
		throttle.WithDefaultPolicy(throttle.PerSecond(1000)))
	// an unbatched decision loads the script, so the one pipeline needs no
	// second try
	mustAllowN(t, throttle.New(c, throttle.WithPrefix(prefix)), "warm-up", 1)
	var wg sync.WaitGroup
	for i := range size {
		wg.Go(func() {
			if r, err := l.Allow(context.Background(), "tenant-"+string(rune('a'+i))); err != nil || !r.Allowed {
				t.Errorf("caller %d: %+v, %v", i, r, err)
			}
		})
	}
	wg.Wait()
	if p := h.Pipelines.Load(); p != 1 {
		t.Fatalf("%d lingering decisions took %d round trips, want 1", size, p)
	}
}

func TestBatchingErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("CancelledCallerDecidesNothing", func(t *testing.T) {
		t.Parallel()
		l, _ := setup(t, throttle.WithBatching(0, 0), throttle.WithDefaultPolicy(throttle.PerSecond(5)))
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := l.Allow(cctx, "acme"); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled caller: %v, want context.Canceled", err)
		}
		if r, err := l.Peek(ctx, "acme"); err != nil || r.Remaining != 5 {
			t.Fatalf("a cancelled decision consumed: %+v, %v", r, err)
		}
	})
	t.Run("CallerLeavesWhenItsContextEndsWhileRedisIsSlow", func(t *testing.T) {
		t.Parallel()
		c, prefix := redistest.Client(t)
		l := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithBatching(0, 0))
		mustAllowN(t, l, "warm-up", 1)
		g := &pipelineGate{open: make(chan struct{}), held: make(chan struct{}, 1)}
		c.AddHook(g)
		// a first decision, alone, goes at once and is held in Redis...
		first := make(chan error, 1)
		go func() { _, err := l.Allow(ctx, "first"); first <- err }()
		<-g.held
		// ...so the next one queues, and its pipeline is held too
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		_, err := l.Allow(cctx, "acme")
		close(g.open) // Redis answers only after the caller left
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("caller of a held pipeline: %v, want its context's deadline", err)
		}
		if err := <-first; err != nil {
			t.Fatalf("the first decision: %v", err)
		}
	})
	t.Run("ScriptCacheFlushed", func(t *testing.T) {
		t.Parallel()
		m := miniredis.RunT(t)
		c := redis.NewClient(&redis.Options{Addr: m.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		l := throttle.New(c, throttle.WithBatching(0, 0))
		mustAllowN(t, l, "acme", 1)
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if r := mustAllowN(t, l, "acme", 1); !r.Allowed || r.Remaining != 8 {
			t.Fatalf("after SCRIPT FLUSH: %+v", r)
		}
	})
	for _, open := range []bool{false, true} {
		t.Run("RedisDown/FailOpen="+map[bool]string{false: "false", true: "true"}[open], func(t *testing.T) {
			t.Parallel()
			port, err := redistest.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + itoa(port), MaxRetries: -1, DialTimeout: time.Second})
			t.Cleanup(func() { _ = c.Close() })
			l := throttle.New(c, throttle.WithBatching(0, 0), throttle.WithFailOpen(open))
			r, err := l.Allow(ctx, "acme")
			if !errors.Is(err, throttle.ErrUnavailable) || r.Allowed != open {
				t.Fatalf("Redis down, fail open %v: %+v, %v", open, r, err)
			}
		})
	}
}

func itoa(n int) string {
	return strconv.Itoa(n)
}

// pipelineGate holds every script and pipeline until open is closed, and
// says on held (when there is room) that it holds one.
type pipelineGate struct{ open, held chan struct{} }

func (g *pipelineGate) DialHook(next redis.DialHook) redis.DialHook { return next }
func (g *pipelineGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if redistest.IsRun(cmd.Name()) {
			select {
			case g.held <- struct{}{}:
			default:
			}
			<-g.open
		}
		return next(ctx, cmd)
	}
}
func (g *pipelineGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		<-g.open
		return next(ctx, cmds)
	}
}
