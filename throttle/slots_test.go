package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// Many processes' calls on a tenant with a concurrency limit: never more
// in flight than the limit, counted by the calls themselves, and every call
// runs once.
func TestConcurrencyLimitsCallsInFlight(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	const limit = 3
	setup := throttle.New(c, throttle.WithPrefix(prefix))
	if err := setup.SetPolicy(context.Background(), "acme", throttle.Policy{Rate: 100000, Burst: 1000, Concurrency: limit}); err != nil {
		t.Fatal(err)
	}
	checkInFlight(t, limit, []string{"acme"}, func() *throttle.Limiter {
		// leases on, as in quotaq-worker: none is granted where there is a
		// limit, so every call is decided by Redis
		return throttle.New(c, throttle.WithPrefix(prefix), throttle.WithLeases(100*time.Millisecond, 0))
	})
}

// checkInFlight runs 60 calls on ids from 8 processes (newLimiter each),
// each taking a slot, running 2 ms and releasing it, and fails unless the
// calls in flight at once, counted by the calls, never pass limit, some
// are refused a slot, and every call runs.
func checkInFlight(t *testing.T, limit int64, ids []string, newLimiter func() *throttle.Limiter) {
	t.Helper()
	ctx := context.Background()
	const workers, jobs = 8, 60
	var inFlight, most, done, refused atomic.Int64
	next := make(chan int, jobs)
	for i := range jobs {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := newLimiter()
			for j := range next {
				slot := fmt.Sprintf("job-%d", j)
				for {
					r, err := l.Reserve(ctx, throttle.Request{IDs: ids, N: 1, Slot: slot})
					if err != nil {
						t.Error(err)
						return
					}
					if r.OK && r.Delay == 0 {
						break
					}
					if r.Result.Reason != throttle.ReasonConcurrency {
						t.Errorf("process %d, %s: %+v, want admitted or refused for concurrency", w, slot, r)
						return
					}
					refused.Add(1)
					time.Sleep(time.Millisecond)
				}
				n := inFlight.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(2 * time.Millisecond) // the call
				inFlight.Add(-1)
				if _, err := l.ReleaseSlot(ctx, slot, ids...); err != nil {
					t.Error(err)
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	// (a refusal says Redis saw the limit reached; the calls' own count may
	// miss the moment on a loaded machine)
	if most.Load() > limit {
		t.Fatalf("%d calls in flight at once, more than the limit %d", most.Load(), limit)
	}
	if done.Load() != jobs || refused.Load() == 0 {
		t.Fatalf("%d of %d calls ran, %d refusals: want all, some refused for a slot", done.Load(), jobs, refused.Load())
	}
}

// A slot is held until released or until it runs out (its holder died),
// renewed while the call runs, kept by a call that holds it already, taken
// only by a call that starts now, and limits every id of a decision.
func TestSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	type step struct {
		at     time.Duration // since the start, on Redis's clock
		do     string        // "take", "renew", "release", "peek", "keep", "multi"
		slot   string
		admits bool // take, peek, keep, multi: admitted now; renew: still held
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"released", []step{
			{0, "take", "a", true}, {0, "take", "b", false}, {0, "release", "a", true}, {0, "take", "b", true},
		}},
		{"runs out when its holder dies", []step{
			{0, "take", "a", true}, {time.Second, "take", "b", false}, {2 * time.Second, "take", "b", true},
		}},
		{"renewed while the call runs", []step{
			{0, "take", "a", true}, {time.Second, "renew", "a", true}, {2500 * time.Millisecond, "take", "b", false},
			{3 * time.Second, "take", "b", true}, {3 * time.Second, "renew", "a", false},
		}},
		{"kept by its holder", []step{
			{0, "take", "a", true}, {0, "take", "a", true}, {0, "take", "b", false},
		}},
		{"not taken by a peek or a booking for later", []step{
			{0, "peek", "a", true}, {0, "keep", "a", true}, {0, "take", "b", true}, {0, "take", "c", false},
		}},
		{"limits every id", []step{
			{0, "multi", "a", true}, {0, "multi", "b", false}, {0, "take", "b", true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, m := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 1000, Burst: 100}))
			for _, id := range []string{"acme", throttle.Upstream("api")} {
				if err := l.SetPolicy(ctx, id, throttle.Policy{Rate: 1000, Burst: 100, Concurrency: 1}); err != nil {
					t.Fatal(err)
				}
			}
			for i, s := range tc.steps {
				m.SetTime(t0.Add(s.at))
				req := throttle.Request{IDs: []string{"acme"}, N: 1, Slot: s.slot, SlotTTL: 2 * time.Second}
				var r throttle.Reservation
				var err error
				got := false
				switch s.do {
				case "take":
					r, err = l.Reserve(ctx, req)
					got = r.OK && r.Delay == 0
					if got != r.Result.HoldsSlot {
						t.Fatalf("step %d: %+v: HoldsSlot %v, want it when admitted", i, r, r.Result.HoldsSlot)
					}
				case "multi":
					req.IDs = []string{"other-" + s.slot, throttle.Upstream("api")}
					r, err = l.Reserve(ctx, req)
					got = r.OK && r.Delay == 0
				case "peek":
					req.N = 0
					r, err = l.Reserve(ctx, req)
					got = r.Result.Allowed
				case "keep":
					req.Ticket, req.KeepTicket = "later-"+s.slot, true
					r, err = l.Reserve(ctx, req)
					got = r.OK
				case "renew":
					var held []string
					held, err = l.RenewSlot(ctx, s.slot, 2*time.Second, "acme")
					got = len(held) == 1
				case "release":
					var freed []string
					freed, err = l.ReleaseSlot(ctx, s.slot, "acme")
					got = len(freed) == 1
				}
				if err != nil {
					t.Fatalf("step %d %s %s: %v", i, s.do, s.slot, err)
				}
				if got != s.admits {
					t.Fatalf("step %d at %s, %s %s: %v (%+v), want %v", i, s.at, s.do, s.slot, got, r, s.admits)
				}
				if (s.do == "take" || s.do == "multi") && !got && r.Result.Reason != throttle.ReasonConcurrency {
					t.Fatalf("step %d: refused for %s, want %s", i, r.Result.Reason, throttle.ReasonConcurrency)
				}
			}
		})
	}
}

func TestConcurrencyMustNotBeNegative(t *testing.T) {
	t.Parallel()
	err := throttle.Policy{Rate: 1, Burst: 1, Concurrency: -1}.Validate()
	if !errors.Is(err, throttle.ErrInvalidPolicy) || err == nil {
		t.Fatalf("Validate: %v, want ErrInvalidPolicy naming the concurrency", err)
	}
}

// A booked call that comes back when its tokens are due still needs a
// slot: with none free its booking stays and it waits (for concurrency, not
// the rate); once one is released it starts, charged once.
func TestBookedCallWaitsForASlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, m := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 1, Burst: 1, Concurrency: 1}))
	reserve := func(slot string) throttle.Reservation {
		t.Helper()
		r, err := l.Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1, Ticket: slot, Slot: slot, SlotTTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := reserve("a"); !r.OK || r.Delay != 0 {
		t.Fatalf("a: %+v, want admitted now", r)
	}
	if r := reserve("b"); !r.OK || r.Delay != time.Second || r.Result.Reason != throttle.ReasonRate {
		t.Fatalf("b: %+v, want booked a second ahead", r)
	}
	m.SetTime(t0.Add(time.Second))
	if r := reserve("b"); !r.Booked || r.Delay == 0 || r.Result.Reason != throttle.ReasonConcurrency {
		t.Fatalf("b, due, a still running: %+v, want its booking kept, waiting for a slot", r)
	}
	if _, err := l.ReleaseSlot(ctx, "a", "acme"); err != nil {
		t.Fatal(err)
	}
	if r := reserve("b"); !r.OK || r.Delay != 0 {
		t.Fatalf("b after a returned: %+v, want admitted now", r)
	}
	// charged once: the bucket had one token a second, b used the one booked
	if r, err := l.Peek(ctx, "acme"); err != nil || r.Remaining != 0 {
		t.Fatalf("after b: %+v, %v; want the bucket empty, not overdrawn", r, err)
	}
	if r := reserve("c"); r.Delay == 0 {
		t.Fatalf("c while b runs: %+v, want it to wait", r)
	}
}

// Without a concurrency limit a call named by a slot takes none: the caller
// has nothing to renew or release, and nothing is written for it.
func TestNoSlotWithoutALimit(t *testing.T) {
	t.Parallel()
	l, m := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 10, Burst: 10}))
	r, err := l.Reserve(context.Background(), throttle.Request{IDs: []string{"acme"}, N: 1, Slot: "job-1"})
	if err != nil || !r.OK || r.Result.HoldsSlot {
		t.Fatalf("Reserve: %+v, %v; want admitted, holding no slot", r, err)
	}
	for _, k := range m.Keys() {
		if strings.HasSuffix(k, ":slots") {
			t.Fatalf("key %q written for a tenant without a limit", k)
		}
	}
}

// InFlight counts the slots held now, and Standing reports it.
func TestInFlightCountsHeldSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, m := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 100, Burst: 100, Concurrency: 3}))
	for _, slot := range []string{"a", "b"} {
		if _, err := l.Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1, Slot: slot, SlotTTL: time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.ReleaseSlot(ctx, "a", "acme"); err != nil {
		t.Fatal(err)
	}
	if s, err := l.Standing(ctx, "acme"); err != nil || s.InFlight != 1 {
		t.Fatalf("Standing: %+v, %v; want 1 in flight", s, err)
	}
	m.SetTime(t0.Add(time.Second)) // b's slot runs out
	if n, err := l.InFlight(ctx, "acme"); err != nil || n != 0 {
		t.Fatalf("InFlight after the slot ran out: %d, %v; want 0", n, err)
	}
}

// A tenant without a limit keeps its leases when the caller names slots
// (as quotaq-worker does for every task): most calls are spent locally.
func TestSlotNamesDoNotCostLeases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	runs := &redistest.Runs{}
	c.AddHook(runs)
	l := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 100000, Burst: 10000}),
		throttle.WithLeases(time.Minute, 0))
	const calls = 200
	for i := range calls {
		r, err := l.Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1, Slot: fmt.Sprint("task-", i)})
		if err != nil || !r.OK || r.Delay != 0 || r.Result.HoldsSlot {
			t.Fatalf("call %d: %+v, %v; want admitted now, holding no slot", i, r, err)
		}
	}
	if n := runs.N.Load(); n > calls/4 {
		t.Fatalf("%d script runs for %d calls: the slot names kept the calls from spending leases", n, calls)
	}
}
