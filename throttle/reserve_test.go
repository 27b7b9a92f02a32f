package throttle_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

func TestReserveBooksOneSlotEach(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 10, Burst: 2}))
	// two now, then one every 100ms: the k-th throttled caller gets its own slot
	want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
	for k, w := range want {
		res, err := l.ReserveN(ctx, "acme", 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK || res.Delay != w {
			t.Fatalf("reservation %d: %+v, want delay %s", k, res, w)
		}
	}
	// a cap on the wait books nothing beyond it
	res, err := l.ReserveN(ctx, "acme", 1, 350*time.Millisecond)
	if err != nil || res.OK || res.Delay != 400*time.Millisecond {
		t.Fatalf("capped reservation: %+v %v", res, err)
	}
	if res, _ = l.ReserveN(ctx, "acme", 1, 450*time.Millisecond); !res.OK || res.Delay != 400*time.Millisecond {
		t.Fatalf("reservation within the cap after a refused one: %+v", res)
	}
	// giving tokens back moves the next slot forward
	if err := l.CancelN(ctx, "acme", 2); err != nil {
		t.Fatal(err)
	}
	if res, _ = l.ReserveN(ctx, "acme", 1, 0); res.Delay != 300*time.Millisecond { // 500ms less two slots
		t.Fatalf("after cancelling two: %+v", res)
	}
}

func TestTicketIsRedeemedOnceWithoutConsumingAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, m := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 10, Burst: 1}))
	mustAllowN(t, l, "acme", 1)
	req := throttle.Request{IDs: []string{"acme"}, N: 1, Ticket: "task-1"}
	res, err := l.Reserve(ctx, req)
	if err != nil || !res.OK || res.Delay != 100*time.Millisecond {
		t.Fatalf("booking: %+v %v", res, err)
	}
	// back too early: still booked, told to wait the rest
	m.SetTime(t0.Add(60 * time.Millisecond))
	if res, _ = l.Reserve(ctx, req); !res.OK || res.Delay != 40*time.Millisecond || res.Result.Allowed {
		t.Fatalf("early return: %+v", res)
	}
	// due: admitted on its booking; the bucket is not charged again
	m.SetTime(t0.Add(100 * time.Millisecond))
	if res, _ = l.Reserve(ctx, req); !res.OK || res.Delay != 0 || !res.Result.Allowed {
		t.Fatalf("redeeming: %+v", res)
	}
	m.SetTime(t0.Add(200 * time.Millisecond))
	if r := mustAllowN(t, l, "acme", 1); !r.Allowed {
		t.Fatalf("the redeemed ticket consumed a second token: %+v", r)
	}
	// the ticket is spent: the same ticket again books anew
	if res, _ = l.Reserve(ctx, req); res.Delay != 100*time.Millisecond {
		t.Fatalf("spent ticket reused: %+v", res)
	}
}

func TestHoldPausesOneTenant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, m := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 10, Burst: 5}))
	if err := l.Hold(ctx, "acme", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	r := mustAllowN(t, l, "acme", 1)
	if r.Allowed || r.Reason != throttle.ReasonPaused || r.RetryAfter < 2*time.Second {
		t.Fatalf("held tenant: %+v", r)
	}
	if r := mustAllowN(t, l, "other", 5); !r.Allowed {
		t.Fatalf("another tenant was paused too: %+v", r)
	}
	// bookings made during the pause come after it, one interval apart
	for k := int64(1); k <= 3; k++ {
		res, _ := l.ReserveN(ctx, "acme", 1, 0)
		if want := 2*time.Second + time.Duration(k)*100*time.Millisecond; !res.OK || res.Delay != want {
			t.Fatalf("booking %d during the pause: %+v, want %s", k, res, want)
		}
	}
	m.SetTime(t0.Add(2*time.Second + 400*time.Millisecond))
	if r := mustAllowN(t, l, "acme", 1); !r.Allowed {
		t.Fatalf("after the pause and the booked slots: %+v", r)
	}
	n, err := l.HoldCount(ctx, "acme")
	if err != nil || n != 1 {
		t.Fatalf("HoldCount = %d, %v", n, err)
	}
}

func TestAllowMultiIsAllOrNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 1, Burst: 10}))
	if err := l.SetPolicy(ctx, "api:stripe", throttle.Policy{Rate: 1, Burst: 3}); err != nil {
		t.Fatal(err)
	}
	// two tenants share the upstream's 3 tokens
	if r, _ := l.AllowMulti(ctx, 2, "acme", "api:stripe"); !r.Allowed || r.Tenant != "api:stripe" || r.Remaining != 1 {
		t.Fatalf("first: %+v", r)
	}
	r, _ := l.AllowMulti(ctx, 2, "globex", "api:stripe")
	if r.Allowed || r.Tenant != "api:stripe" || r.Reason != throttle.ReasonRate {
		t.Fatalf("upstream exhausted: %+v", r)
	}
	// the refusal consumed nothing from globex
	if p, _ := l.Peek(ctx, "globex"); p.Remaining != 10 {
		t.Fatalf("globex charged for a refused call: %+v", p)
	}
	// a tenant's own limit refuses too, without touching the upstream
	mustAllowN(t, l, "acme", 8)
	if r, _ := l.AllowMulti(ctx, 1, "acme", "api:stripe"); r.Allowed || r.Tenant != "acme" {
		t.Fatalf("tenant exhausted: %+v", r)
	}
	if p, _ := l.Peek(ctx, "api:stripe"); p.Remaining != 1 {
		t.Fatalf("upstream charged for a refused call: %+v", p)
	}
}

func TestWindowAlgorithms(t *testing.T) {
	t.Parallel()
	// 4 per second: burst 4 at rate 4 is a one-second window
	policy := throttle.Policy{Rate: 4, Burst: 4}
	type step struct {
		at      time.Duration
		n       int64
		allowed bool
	}
	tests := []struct {
		algo  throttle.Algorithm
		steps []step
	}{
		{throttle.FixedWindow, []step{
			{900 * time.Millisecond, 4, true}, {950 * time.Millisecond, 1, false},
			// a new window at 1s: 4 more right at the edge (the 2x burst the doc warns of)
			{1000 * time.Millisecond, 4, true}, {1999 * time.Millisecond, 1, false}, {2000 * time.Millisecond, 1, true},
		}},
		{throttle.SlidingWindow, []step{
			{900 * time.Millisecond, 4, true}, {950 * time.Millisecond, 1, false},
			{1000 * time.Millisecond, 1, false}, {1899 * time.Millisecond, 1, false},
			{1900 * time.Millisecond, 4, true}, {1901 * time.Millisecond, 1, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.algo.String(), func(t *testing.T) {
			t.Parallel()
			l, m := setupClock(t, t0, throttle.WithAlgorithm(tt.algo), throttle.WithDefaultPolicy(policy))
			for i, s := range tt.steps {
				m.SetTime(t0.Add(s.at))
				if r := mustAllowN(t, l, "acme", s.n); r.Allowed != s.allowed {
					t.Fatalf("step %d (%+v): %+v", i, s, r)
				} else if !r.Allowed && r.RetryAfter <= 0 {
					t.Fatalf("step %d refused without a RetryAfter: %+v", i, r)
				}
			}
		})
	}
}

func TestParseAlgorithm(t *testing.T) {
	t.Parallel()
	for _, a := range throttle.Algorithms() {
		if got, err := throttle.ParseAlgorithm(a.String()); err != nil || got != a {
			t.Errorf("ParseAlgorithm(%q) = %v, %v", a, got, err)
		}
	}
	if _, err := throttle.ParseAlgorithm("leaky"); err == nil {
		t.Error("ParseAlgorithm(leaky) accepted")
	}
}

func TestRateChangeRepricesTheTokensOwed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := setupClock(t, t0)
	if err := l.SetPolicy(ctx, "acme", throttle.Policy{Rate: 1, Burst: 10}); err != nil {
		t.Fatal(err)
	}
	mustAllowN(t, l, "acme", 10) // 10 tokens owed: 10s at 1/s
	if err := l.SetPolicy(ctx, "acme", throttle.Policy{Rate: 100, Burst: 10}); err != nil {
		t.Fatal(err)
	}
	// at 100/s the same 10 tokens take 100ms, not the 10s of the old rate
	r := mustAllowN(t, l, "acme", 1)
	if r.Allowed || r.RetryAfter != 10*time.Millisecond || r.ResetAfter != 100*time.Millisecond {
		t.Fatalf("after raising the rate: %+v", r)
	}
}

// Tokens booked before a Hold move back by the pause and keep their
// spacing: they do not all come due together when the pause ends.
func TestHoldMovesBookingsBackKeepingTheirSpacing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, m := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 20, Burst: 1}))
	mustAllowN(t, l, "acme", 1)
	var dues []time.Duration
	for k := 0; k < 20; k++ {
		res, err := l.Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1, Ticket: "job-" + strconv.Itoa(k)})
		if err != nil || !res.OK {
			t.Fatalf("booking %d: %+v %v", k, res, err)
		}
		dues = append(dues, res.Delay)
	}
	if err := l.Hold(ctx, "acme", time.Second); err != nil {
		t.Fatal(err)
	}
	// redeem each at its original due time plus the pause: one at a time
	for k, due := range dues {
		req := throttle.Request{IDs: []string{"acme"}, N: 1, Ticket: "job-" + strconv.Itoa(k)}
		m.SetTime(t0.Add(time.Second + due - time.Millisecond))
		if res, _ := l.Reserve(ctx, req); res.Result.Allowed {
			t.Fatalf("ticket %d admitted 1ms before its slot moved by the pause", k)
		}
		m.SetTime(t0.Add(time.Second + due))
		if res, _ := l.Reserve(ctx, req); !res.Result.Allowed {
			t.Fatalf("ticket %d not admitted at its slot moved by the pause: %+v", k, res)
		}
	}
	// a booking made now comes after all of them
	m.SetTime(t0.Add(time.Second))
	res, _ := l.ReserveN(ctx, "acme", 1, 0)
	if want := time.Second + dues[len(dues)-1] + 50*time.Millisecond; res.Delay != want-time.Second {
		t.Fatalf("new booking after the pause: delay %s, want %s", res.Delay, want-time.Second)
	}
}

// A job shaped at enqueue time books its tokens then, even when they are
// there at once, and redeems them when it runs instead of paying twice.
func TestKeepTicketPrepaysAJobThatComesLater(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, m := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 10, Burst: 1}))
	req := throttle.Request{IDs: []string{"acme"}, N: 1, Ticket: "q:job-1", KeepTicket: true}
	res, err := l.Reserve(ctx, req)
	if err != nil || !res.OK || res.Delay != 0 {
		t.Fatalf("prepaying: %+v %v", res, err)
	}
	// the bucket is spent by the prepayment...
	if r := mustAllowN(t, l, "acme", 1); r.Allowed {
		t.Fatalf("token still there after the prepayment: %+v", r)
	}
	// ...and the job, when it comes, runs on it without a second charge
	m.SetTime(t0.Add(30 * time.Millisecond))
	req.KeepTicket = false
	if res, _ = l.Reserve(ctx, req); !res.Result.Allowed {
		t.Fatalf("prepaid job refused: %+v", res)
	}
	if p, _ := l.Peek(ctx, "acme"); p.RetryAfter != 70*time.Millisecond {
		t.Fatalf("redeeming charged the bucket again: %+v", p)
	}
}
