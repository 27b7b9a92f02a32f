package throttle_test

import (
	"context"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// interval books two more tokens of tenant now and returns how far apart
// their slots are: the interval the tenant runs at.
func interval(t *testing.T, l *throttle.Limiter, tenant string) time.Duration {
	t.Helper()
	ctx := context.Background()
	var d [3]time.Duration
	for i := range d {
		res, err := l.ReserveN(ctx, tenant, 1, 0)
		if err != nil || !res.OK {
			t.Fatalf("reserve: %+v %v", res, err)
		}
		d[i] = res.Delay
	}
	return d[2] - d[1]
}

func near(got, want time.Duration) bool {
	diff := got - want
	return diff > -3*time.Microsecond && diff < 3*time.Microsecond
}

// An upstream's refusal cuts the rate a tenant runs at, once for the calls
// refused together, and the rate climbs back to the policy's while no
// refusal comes; never below the floor, never above the policy.
func TestBackoffLearnsTheUpstream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := throttle.Policy{Rate: 20, Burst: 1} // 50ms
	l, m := setupClock(t, t0, throttle.WithDefaultPolicy(p),
		throttle.WithLearning(throttle.Learning{Factor: 0.8, Floor: 0.1, Recovery: 2 * time.Minute}))
	at := func(d time.Duration) { m.SetTime(t0.Add(d)) }
	steps := []struct {
		name   string
		at     time.Duration
		refuse bool
		want   time.Duration // interval after the step
	}{
		{"PolicyBeforeAnyRefusal", 0, false, 50 * time.Millisecond},
		{"CutToFourFifths", time.Second, true, 62500 * time.Microsecond}, // 16/s
		{"RefusedTogetherCutOnce", time.Second, true, 62500 * time.Microsecond},
		// a second later it had climbed to 16 + 20 × 1/120; × 0.8 = 12.93/s
		{"CutAgainAfterTheCooldown", 2 * time.Second, true, 77319588 * time.Nanosecond},
		// 30 s later: 12.93 + 20 × 30/120 = 17.93/s
		{"ClimbsBack", 32 * time.Second, false, 55762082 * time.Nanosecond},
		{"BackToThePolicy", 3 * time.Minute, false, 50 * time.Millisecond},
	}
	for _, s := range steps {
		at(s.at)
		if s.refuse {
			if err := l.Backoff(ctx, "acme", 0); err != nil {
				t.Fatal(err)
			}
		}
		if got := interval(t, l, "acme"); !near(got, s.want) {
			t.Fatalf("%s: interval %s, want %s", s.name, got, s.want)
		}
	}

	// refused again and again, a second apart: never below a tenth
	for i := range 30 {
		at(4*time.Minute + time.Duration(i)*time.Second)
		if err := l.Backoff(ctx, "floor", 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := interval(t, l, "floor"); got > 500*time.Millisecond+time.Millisecond {
		t.Fatalf("after 30 refusals: interval %s, want at most the floor's 500ms (2/s)", got)
	}
}

// Without learning, a refusal only holds: the policy's rate goes out again.
func TestBackoffWithoutLearningOnlyHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, m := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 20, Burst: 1}), throttle.WithLearning(throttle.NoLearning))
	if err := l.Backoff(ctx, "acme", time.Second); err != nil {
		t.Fatal(err)
	}
	if r := mustAllowN(t, l, "acme", 1); r.Allowed {
		t.Fatalf("held tenant admitted: %+v", r)
	}
	m.SetTime(t0.Add(2 * time.Second))
	if got := interval(t, l, "acme"); !near(got, 50*time.Millisecond) {
		t.Fatalf("interval %s after the hold, want the policy's 50ms", got)
	}
}

func TestLearningValidate(t *testing.T) {
	t.Parallel()
	bad := []throttle.Learning{
		{Factor: 1, Floor: 0.1, Recovery: time.Minute},
		{Factor: -0.5, Floor: 0.1, Recovery: time.Minute},
		{Factor: 0.5, Floor: 0, Recovery: time.Minute},
		{Factor: 0.5, Floor: 1.5, Recovery: time.Minute},
		{Factor: 0.5, Floor: 0.1, Recovery: time.Millisecond},
	}
	for _, lr := range bad {
		if err := lr.Validate(); err == nil {
			t.Errorf("%+v: no error", lr)
		}
	}
	for _, lr := range []throttle.Learning{throttle.DefaultLearning, throttle.NoLearning} {
		if err := lr.Validate(); err != nil {
			t.Errorf("%+v: %v", lr, err)
		}
	}
}

// A cut spreads the tickets booked at the old rate to the new one, keeping
// their order, and a pause moves them after it: the jobs parked at their
// times come at the rate the upstream was learned to take.
func TestBackoffSpreadsTheTicketsBooked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 20, Burst: 1}),
		throttle.WithLearning(throttle.Learning{Factor: 0.8, Floor: 0.1, Recovery: 2 * time.Minute}))
	mustAllowN(t, l, "acme", 1)
	tickets := ticketNames(4)
	delays := book(t, l, "acme", tickets) // 50, 100, 150, 200 ms
	if err := l.Backoff(ctx, "acme", time.Second); err != nil {
		t.Fatal(err)
	}
	dues, err := l.TicketDues(ctx, "acme", append(tickets, "never-booked")...)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range delays {
		// after the 1 s pause, spread from 50 ms apart (20/s) to 62.5 (16/s)
		want := t0.Add(time.Second + d*5/4)
		if !near(dues[i].Sub(want), 0) {
			t.Errorf("%s due %s after the cut, want %s", tickets[i], dues[i].Sub(t0), want.Sub(t0))
		}
	}
	if !dues[4].IsZero() {
		t.Errorf("a ticket never booked is due at %s", dues[4])
	}
}

// A cut does not lengthen the pause it comes with: after Backoff(d) the
// next slot is due d later plus the bookings, spread at the new rate.
func TestBackoffPauseIsNotStretchedByTheCut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 20, Burst: 1}),
		throttle.WithLearning(throttle.Learning{Factor: 0.8, Floor: 0.1, Recovery: 2 * time.Minute}))
	mustAllowN(t, l, "acme", 1) // one token in use: 50 ms of backlog
	if err := l.Backoff(ctx, "acme", time.Hour); err != nil {
		t.Fatal(err)
	}
	res, err := l.ReserveN(ctx, "acme", 1, 0)
	if err != nil || !res.OK {
		t.Fatalf("reserve: %+v %v", res, err)
	}
	// the hour, then the token in use and this one at 16/s (62.5 ms each)
	if lo, hi := time.Hour, time.Hour+200*time.Millisecond; res.Delay < lo || res.Delay > hi {
		t.Fatalf("first slot after a 1h pause with a cut: %s, want within [%s, %s]", res.Delay, lo, hi)
	}
}

// A new rate re-spaces the bookings made under the old one: the jobs booked
// come at the new rate, sooner for a higher one, later for a lower one.
func TestSetPolicyRespacesTheBookings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		rate float64
		want func(d time.Duration) time.Duration
	}{
		{"Faster", 20, func(d time.Duration) time.Duration { return d / 2 }},
		{"Slower", 5, func(d time.Duration) time.Duration { return d * 2 }},
		{"Same", 10, func(d time.Duration) time.Duration { return d }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, _ := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 10, Burst: 1}))
			if err := l.SetPolicy(ctx, "acme", throttle.Policy{Rate: 10, Burst: 1}); err != nil {
				t.Fatal(err)
			}
			mustAllowN(t, l, "acme", 1)
			tickets := ticketNames(4)
			delays := book(t, l, "acme", tickets) // 100 ... 400 ms
			if err := l.SetPolicy(ctx, "acme", throttle.Policy{Rate: tt.rate, Burst: 1}); err != nil {
				t.Fatal(err)
			}
			dues, err := l.TicketDues(ctx, "acme", tickets...)
			if err != nil {
				t.Fatal(err)
			}
			for i, d := range delays {
				if got, want := dues[i].Sub(t0), tt.want(d); !near(got, want) {
					t.Errorf("%s due at +%s after the rate became %v/s, want +%s", tickets[i], got, tt.rate, want)
				}
			}
			// a booking made now comes after them, at the new rate
			res, err := l.ReserveN(ctx, "acme", 1, 0)
			if err != nil || !res.OK || !near(res.Delay, tt.want(delays[3])+time.Duration(float64(time.Second)/tt.rate)) {
				t.Errorf("next booking: %+v %v, want after the last at the new rate", res, err)
			}
		})
	}
}

// Standing says how long a pause has left and the rate the id runs at
// while it climbs back, and when it is back at its policy's.
func TestStandingShowsHoldAndLearnedRate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, m := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: 10, Burst: 10}),
		throttle.WithLearning(throttle.Learning{Factor: 0.5, Floor: 0.1, Recovery: 10 * time.Second}))
	s, err := l.Standing(ctx, "acme")
	if err != nil || s.HoldLeft != 0 || s.LearnedRate != 0 {
		t.Fatalf("before any refusal: %+v, %v; want no hold, the policy's rate", s, err)
	}
	if err := l.Backoff(ctx, "acme", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	m.SetTime(t0.Add(time.Second))
	s, err = l.Standing(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	// cut to 5/s, climbing back by 10/s in 10 s: 6/s a second later, back in 4 s more
	if s.HoldLeft != 2*time.Second || s.LearnedRate != 6 || s.LearnedFullIn != 4*time.Second {
		t.Fatalf("a second after a refusal: hold %s, rate %v, back in %s; want 2s, 6/s, 4s", s.HoldLeft, s.LearnedRate, s.LearnedFullIn)
	}
	m.SetTime(t0.Add(6 * time.Second))
	if s, err = l.Standing(ctx, "acme"); err != nil || s.HoldLeft != 0 || s.LearnedRate != 0 {
		t.Fatalf("after recovery: %+v, %v; want no hold, the policy's rate", s, err)
	}
}

// TestUnholdLiftsThePauseAndTheLearnedRate: an operator's Unhold lets a
// held, slowed tenant run at once at its policy's rate, and says whether
// there was anything to lift; the hold count stays.
func TestUnholdLiftsThePauseAndTheLearnedRate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	l := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 10, Burst: 10}),
		throttle.WithLearning(throttle.Learning{Factor: 0.5, Floor: 0.1, Recovery: time.Hour}))
	if err := l.Backoff(ctx, "acme", time.Hour); err != nil {
		t.Fatal(err)
	}
	if r := mustAllowN(t, l, "acme", 1); r.Allowed || r.Reason != throttle.ReasonPaused {
		t.Fatalf("held: %+v, want refused for the pause", r)
	}
	for i, want := range []bool{true, false} {
		had, err := l.Unhold(ctx, "acme")
		if err != nil || had != want {
			t.Fatalf("Unhold #%d = %v, %v; want %v", i+1, had, err, want)
		}
	}
	s, err := l.Standing(ctx, "acme")
	if err != nil || s.HoldLeft != 0 || s.LearnedRate != 0 || s.Holds != 1 {
		t.Fatalf("after Unhold: %+v, %v; want no pause, the policy's rate, 1 hold counted", s, err)
	}
	if r := mustAllowN(t, l, "acme", 10); !r.Allowed {
		t.Fatalf("after Unhold: %+v, want the whole burst", r)
	}
	if _, err := l.Unhold(ctx, ""); err == nil {
		t.Error("Unhold of an invalid id: no error")
	}
}
