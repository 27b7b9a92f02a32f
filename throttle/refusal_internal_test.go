package throttle

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
)

// gate holds every decision script until it is opened, and counts them.
type gate struct {
	open  chan struct{}
	evals atomic.Int64
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "evalsha" || cmd.Name() == "eval" {
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
// share its refusal, instead of all asking at once.
func TestRefusalCacheCoalescesAnExpiredRefusal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	l := New(c, WithPrefix(prefix), WithDefaultPolicy(Policy{Rate: 0.001, Burst: 1}), WithRefusalCache(time.Hour))
	if r, err := l.Allow(ctx, "acme"); err != nil || !r.Allowed {
		t.Fatalf("first token: %+v, %v", r, err)
	}
	g := &gate{open: make(chan struct{})}
	c.AddHook(g)
	const callers = 20
	results := make(chan Result, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			r, err := l.Allow(ctx, "acme")
			if err != nil {
				t.Error(err)
			}
			results <- r
		})
	}
	// one caller leads and is held at the gate; the others wait for it
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := l.refused.shard("acme")
		s.mu.Lock()
		f := s.flights["acme"]
		s.mu.Unlock()
		if f != nil && f.waiting.Load() == callers-1 && g.evals.Load() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %d scripts sent, want 1 with %d callers waiting", g.evals.Load(), callers-1)
		}
		time.Sleep(time.Millisecond)
	}
	close(g.open)
	wg.Wait()
	close(results)
	for r := range results {
		if r.Allowed || r.Reason != ReasonRate {
			t.Fatalf("a caller got %+v, want the shared refusal", r)
		}
	}
	if n := g.evals.Load(); n != 1 {
		t.Fatalf("%d callers sent %d scripts, want 1", callers, n)
	}
}
