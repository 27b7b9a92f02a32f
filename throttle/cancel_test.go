package throttle_test

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// cancelStep is one call of a cancellation scenario, on miniredis's clock
// (at is the time since t0): what it does, and what it must answer.
type cancelStep struct {
	at     time.Duration
	do     string // "allow", "reserve", "cancel" (CancelN), "ticket" (CancelTicket)
	n      int64
	ticket string
	keep   bool // reserve: KeepTicket
	// allow: whether it is admitted; reserve: the delay it is booked at
	// (wantOK false: refused); cancel, ticket: nothing
	wantOK    bool
	wantDelay time.Duration
}

func runCancelSteps(t *testing.T, algo throttle.Algorithm, p throttle.Policy, steps []cancelStep) {
	t.Helper()
	ctx := context.Background()
	l, m := setupClock(t, t0, throttle.WithAlgorithm(algo), throttle.WithDefaultPolicy(p))
	for i, s := range steps {
		m.SetTime(t0.Add(s.at))
		req := throttle.Request{IDs: []string{"acme"}, N: s.n, Ticket: s.ticket, KeepTicket: s.keep}
		switch s.do {
		case "allow":
			r, err := l.AllowN(ctx, "acme", s.n)
			if err != nil || r.Allowed != s.wantOK {
				t.Fatalf("step %d at %s: AllowN(%d) = %+v, %v; want allowed %v", i, s.at, s.n, r, err, s.wantOK)
			}
		case "reserve":
			res, err := l.Reserve(ctx, req)
			if err != nil || res.OK != s.wantOK || (s.wantOK && res.Delay != s.wantDelay) {
				t.Fatalf("step %d at %s: Reserve(%+v) = %+v, %v; want OK %v, delay %s", i, s.at, req, res, err, s.wantOK, s.wantDelay)
			}
		case "cancel":
			if err := l.CancelN(ctx, "acme", s.n); err != nil {
				t.Fatalf("step %d: CancelN: %v", i, err)
			}
		case "ticket":
			if err := l.CancelTicket(ctx, req); err != nil {
				t.Fatalf("step %d: CancelTicket: %v", i, err)
			}
		}
	}
}

// CancelTicket gives back only what the ticket holds, once, and keeps what
// later bookings rely on (as x/time/rate's Reservation.CancelAt).
func TestCancelTicketGivesBackOnlyWhatItHolds(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	tenPerSecond := throttle.Policy{Rate: 10, Burst: 2}
	for _, tc := range []struct {
		name  string
		p     throttle.Policy
		steps []cancelStep
	}{
		{"MadeUpTicketGivesNothing", tenPerSecond, []cancelStep{
			{do: "allow", n: 2, wantOK: true},
			{do: "ticket", n: 2, ticket: "made-up"},
			{do: "allow", n: 1, wantOK: false},
		}},
		{"RedeemedTicketGivesNothing", tenPerSecond, []cancelStep{
			{do: "allow", n: 2, wantOK: true},
			{do: "reserve", n: 1, ticket: "a", wantOK: true, wantDelay: 100 * ms},
			{at: 100 * ms, do: "reserve", n: 1, ticket: "a", wantOK: true, wantDelay: 0}, // redeemed
			{at: 100 * ms, do: "ticket", n: 1, ticket: "a"},
			{at: 100 * ms, do: "allow", n: 1, wantOK: false},
		}},
		{"CancelledTwiceGivesOnce", tenPerSecond, []cancelStep{
			{do: "allow", n: 2, wantOK: true},
			{do: "reserve", n: 1, ticket: "a", wantOK: true, wantDelay: 100 * ms},
			{do: "reserve", n: 1, ticket: "b", wantOK: true, wantDelay: 200 * ms},
			{do: "ticket", n: 1, ticket: "b"},
			{do: "ticket", n: 1, ticket: "b"},
			{do: "reserve", n: 1, ticket: "c", wantOK: true, wantDelay: 200 * ms},
		}},
		{"LastBookingGivesAllBack", tenPerSecond, []cancelStep{
			{do: "allow", n: 2, wantOK: true},
			{do: "reserve", n: 2, ticket: "a", wantOK: true, wantDelay: 200 * ms},
			{do: "ticket", n: 2, ticket: "a"},
			{do: "reserve", n: 1, wantOK: true, wantDelay: 100 * ms},
		}},
		// book A (2), book B (1), cancel A, reserve 2: B's slot was placed
		// behind A's tokens, so one of them stays taken; giving both back
		// would put C's 2 tokens and B's 1 at 100ms, with a burst of 2
		{"LaterBookingsKeepWhatTheyRelyOn", tenPerSecond, []cancelStep{
			{do: "reserve", n: 2, ticket: "a", keep: true, wantOK: true, wantDelay: 0},
			{do: "reserve", n: 1, ticket: "b", wantOK: true, wantDelay: 100 * ms},
			{do: "ticket", n: 2, ticket: "a"},
			{do: "reserve", n: 2, ticket: "c", wantOK: true, wantDelay: 200 * ms},
		}},
		// the bucket refilled over A's tokens since they were due: cancelled
		// 50ms later, A gives back what is left of them, not two more
		{"RefilledSinceDueIsNotGivenTwice", tenPerSecond, []cancelStep{
			{do: "reserve", n: 2, ticket: "a", keep: true, wantOK: true, wantDelay: 0},
			{at: 50 * ms, do: "ticket", n: 2, ticket: "a"},
			{at: 50 * ms, do: "allow", n: 2, wantOK: true},
			{at: 50 * ms, do: "allow", n: 1, wantOK: false},
		}},
		{"QuotaOfAMadeUpTicketStaysUsed", throttle.Policy{Rate: 1000, Burst: 10, Quota: 3}, []cancelStep{
			{do: "allow", n: 3, wantOK: true},
			{do: "ticket", n: 3, ticket: "made-up"},
			{do: "allow", n: 1, wantOK: false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runCancelSteps(t, throttle.TokenBucket, tc.p, tc.steps)
		})
	}
}

// FuzzCancelKeepsTheLimit books, redeems and cancels tickets (and holds) in any order on
// one token bucket (on miniredis, whose TIME the test sets) and checks that
// the tokens not cancelled never pass the limit: over any stretch [s, e] of
// due times, at most burst + rate*(e-s). A cancelled ticket's holder does
// not act; a ticket redeemed, never booked or cancelled before gives back
// nothing, so cancelling it again must not make room.
func FuzzCancelKeepsTheLimit(f *testing.F) {
	m, c := miniClient(f, time.Time{})
	var seq atomic.Int64
	// the sequence of LaterBookingsKeepWhatTheyRelyOn, then variations
	f.Add(uint8(1), uint8(1), []byte{2, 0x31, 2, 0x04, 3, 0x01, 2, 0x09})
	f.Add(uint8(2), uint8(3), []byte{1, 1, 2, 0x01, 2, 0x02, 3, 0x01, 0, 9, 2, 0x23, 3, 0x05, 1, 2})
	f.Add(uint8(1), uint8(0), []byte{2, 0x11, 2, 0x22, 0, 30, 2, 0x01, 3, 0x02, 3, 0x02, 2, 0x03})
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rates := []float64{1, 10, 100, 1000}

	f.Fuzz(func(t *testing.T, rateSel, burstSel uint8, ops []byte) {
		ctx := context.Background()
		p := throttle.Policy{Rate: rates[int(rateSel)%len(rates)], Burst: int64(burstSel%5) + 1}
		m.SetTime(start)
		now := start
		l := throttle.New(c, throttle.WithPrefix(fmt.Sprintf("fc%d", seq.Add(1))), throttle.WithDefaultPolicy(p))
		type grant struct {
			due  time.Time
			n    int64
			live bool
		}
		var grants []*grant
		booked := map[string]*grant{} // tickets recorded and not redeemed or cancelled
		for i := 0; i+1 < len(ops) && i < 200; i += 2 {
			op, arg := ops[i], ops[i+1]
			n := int64(arg&3) + 1
			ticket := fmt.Sprintf("k%d", (arg>>2)&3)
			switch op % 5 {
			case 0:
				now = now.Add(time.Duration(arg)*3*time.Millisecond + time.Microsecond)
				m.SetTime(now)
			case 1:
				r, err := l.AllowN(ctx, "t", n)
				if err != nil {
					t.Fatal(err)
				}
				if r.Allowed {
					grants = append(grants, &grant{now, n, true})
				}
			case 2:
				keep := arg&16 != 0
				g, wasBooked := booked[ticket]
				if wasBooked {
					n = g.n // asking again with its ticket
				}
				res, err := l.Reserve(ctx, throttle.Request{IDs: []string{"t"}, N: n, Ticket: ticket, KeepTicket: keep})
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case wasBooked && res.Result.Allowed:
					delete(booked, ticket) // redeemed: its holder acts
				case wasBooked:
				case res.OK:
					g := &grant{now.Add(res.Delay), n, true}
					grants = append(grants, g)
					if res.Delay > 0 || keep {
						booked[ticket] = g
					}
				}
			case 3:
				g := booked[ticket]
				cn := n
				if g != nil {
					cn = g.n
				}
				if err := l.CancelTicket(ctx, throttle.Request{IDs: []string{"t"}, N: cn, Ticket: ticket}); err != nil {
					t.Fatal(err)
				}
				if g != nil {
					g.live = false
					delete(booked, ticket)
				}
			case 4: // the upstream said stop: bookings move behind the pause
				d := time.Duration(arg)*2*time.Millisecond + time.Millisecond
				if err := l.Hold(ctx, "t", d); err != nil {
					t.Fatal(err)
				}
				for _, g := range booked {
					g.live = false // still booked, moved by an amount the test does not know: left out
				}
			}
		}
		iv := time.Duration(math.Round(1e9 / p.Rate))
		for _, a := range grants {
			for _, b := range grants {
				if !a.live || !b.live || b.due.Before(a.due) {
					continue
				}
				var sum int64
				for _, g := range grants {
					if g.live && !g.due.Before(a.due) && !g.due.After(b.due) {
						sum += g.n
					}
				}
				if most := p.Burst + int64(b.due.Sub(a.due)/iv); sum > most {
					t.Fatalf("%v: %d tokens not cancelled are due within [%s, %s], the most is %d",
						p, sum, a.due.Sub(start), b.due.Sub(start), most)
				}
			}
		}
	})
}
