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

// FuzzDecisions drives one tenant's limiter through any sequence of allow,
// reserve, peek, hold and clock steps on miniredis (whose TIME the test
// sets), and checks what no sequence may break:
//
//   - no error and no panic for valid input;
//   - a Result is consistent: Remaining within [0, burst], RetryAfter 0 when
//     allowed and above 0 (or -1: never / unknown) when refused, a reason
//     exactly when refused;
//   - a reservation never waits past its maxWait;
//   - nothing is admitted while the tenant is held;
//   - the quota is never exceeded;
//   - over any stretch of time [s, e] the tokens granted (at the time they
//     are due) are at most burst + rate*(e-s) for the token bucket, and
//     burst per window (plus one window for the edge) for the windows;
//
// with or without leases (WithLeases) on the same clock.
func FuzzDecisions(f *testing.F) {
	m, c := miniClient(f, time.Time{})
	var seq atomic.Int64

	f.Add(uint8(1), uint8(4), uint8(1), uint8(0), []byte{1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 10, 1, 0})
	f.Add(uint8(3), uint8(9), uint8(0), uint8(0), []byte{2, 5, 2, 5, 2, 5, 2, 0, 0, 50, 1, 3, 2, 200})
	f.Add(uint8(0), uint8(2), uint8(3), uint8(1), []byte{1, 1, 0, 100, 1, 1, 0, 100, 1, 1, 0, 255, 1, 3})
	f.Add(uint8(4), uint8(19), uint8(6), uint8(2), []byte{1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 0, 1, 1, 3})
	f.Add(uint8(2), uint8(5), uint8(0), uint8(0), []byte{4, 20, 1, 0, 2, 0, 0, 30, 1, 0, 0, 200, 1, 0})
	f.Add(uint8(5), uint8(0), uint8(9), uint8(0), []byte{3, 0, 1, 1, 3, 0, 2, 1, 2, 1, 2, 1, 0, 1, 3, 0})
	f.Add(uint8(5), uint8(9), uint8(1), uint8(24), []byte{1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 4, 3, 1, 0, 0, 9, 1, 2, 1, 2})

	rates := []float64{0.5, 1, 3, 10, 100, 1000}
	algos := throttle.Algorithms()
	start := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

	f.Fuzz(func(t *testing.T, rateSel, burstSel, quotaSel, algoSel uint8, ops []byte) {
		ctx := context.Background()
		p := throttle.Policy{Rate: rates[int(rateSel)%len(rates)], Burst: int64(burstSel%20) + 1}
		if quotaSel%3 == 0 {
			p.Quota = int64(quotaSel%50) + 1
		}
		algo := algos[int(algoSel)%len(algos)]
		m.SetTime(start)
		now := start
		opts := []throttle.Option{throttle.WithPrefix(fmt.Sprintf("fz%d", seq.Add(1))), throttle.WithAlgorithm(algo), throttle.WithDefaultPolicy(p)}
		if algoSel&8 != 0 {
			// leases on the fuzz's clock, which moves Redis's too
			ttl := time.Duration(algoSel>>4+1) * 10 * time.Millisecond
			opts = append(opts, throttle.WithLeases(ttl, 8), throttle.WithLeaseClock(func() time.Time { return now }))
		}
		l := throttle.New(c, opts...)

		type grant struct {
			due time.Time
			n   int64
		}
		var grants []grant
		var used int64
		var heldUntil time.Time
		check := func(what string, r throttle.Result, n int64) {
			t.Helper()
			if r.Remaining < 0 || r.Remaining > p.Burst {
				t.Fatalf("%s: Remaining %d outside [0, %d]: %+v", what, r.Remaining, p.Burst, r)
			}
			if r.Allowed && (r.RetryAfter != 0 || r.Reason != throttle.ReasonNone) {
				t.Fatalf("%s: allowed with RetryAfter %s, reason %v", what, r.RetryAfter, r.Reason)
			}
			if !r.Allowed && (r.Reason == throttle.ReasonNone || (r.RetryAfter <= 0 && r.RetryAfter != -1)) {
				t.Fatalf("%s: refused with RetryAfter %s, reason %v: %+v", what, r.RetryAfter, r.Reason, r)
			}
			if p.Quota > 0 && r.QuotaRemaining != p.Quota-used {
				t.Fatalf("%s: QuotaRemaining %d, want %d - %d used", what, r.QuotaRemaining, p.Quota, used)
			}
		}
		for i := 0; i+1 < len(ops) && i < 300; i += 2 {
			op, arg := ops[i], ops[i+1]
			n := int64(arg%4) + 1
			switch op % 5 {
			case 0: // the clock moves
				now = now.Add(time.Duration(arg)*7*time.Millisecond + time.Microsecond)
				m.SetTime(now)
			case 1:
				r, err := l.AllowN(ctx, "t", n)
				if err != nil {
					t.Fatalf("AllowN(%d): %v", n, err)
				}
				if r.Allowed {
					if now.Before(heldUntil) {
						// (regression seed testdata/fuzz/FuzzDecisions/57d7023bd1681b81:
						// windows once ignored a hold while not full)
						t.Fatalf("%s: AllowN(%d) admitted at %s while held until %s", algo, n, now.Sub(start), heldUntil.Sub(start))
					}
					grants = append(grants, grant{now, n})
					used += n
				}
				check(fmt.Sprintf("AllowN(%d) at %s", n, now.Sub(start)), r, n)
			case 2:
				maxWait := time.Duration(arg/4) * 25 * time.Millisecond
				res, err := l.ReserveN(ctx, "t", n, maxWait)
				if err != nil {
					t.Fatalf("ReserveN(%d, %s): %v", n, maxWait, err)
				}
				if res.OK {
					if maxWait > 0 && res.Delay > maxWait {
						t.Fatalf("ReserveN(%d, %s) booked %s ahead", n, maxWait, res.Delay)
					}
					due := now.Add(res.Delay)
					if due.Before(heldUntil) {
						t.Fatalf("%s: ReserveN(%d) at %s booked tokens due at %s, inside a hold until %s", algo, n, now.Sub(start), due.Sub(start), heldUntil.Sub(start))
					}
					grants = append(grants, grant{due, n})
					used += n
				} else if res.Result.Allowed {
					t.Fatalf("ReserveN: not OK but allowed: %+v", res)
				}
				check(fmt.Sprintf("ReserveN(%d, %s) at %s", n, maxWait, now.Sub(start)), res.Result, n)
			case 3:
				r, err := l.Peek(ctx, "t")
				if err != nil {
					t.Fatal(err)
				}
				check("Peek", r, 1)
				r2, err := l.Peek(ctx, "t")
				if err != nil || r2 != r {
					t.Fatalf("Peek changed the state: %+v then %+v (%v)", r, r2, err)
				}
			case 4:
				d := time.Duration(arg)*5*time.Millisecond + time.Millisecond
				if err := l.Hold(ctx, "t", d); err != nil {
					t.Fatal(err)
				}
				if until := now.Add(d); until.After(heldUntil) {
					heldUntil = until
				}
			}
		}
		if p.Quota > 0 && used > p.Quota {
			t.Fatalf("granted %d tokens, quota %d", used, p.Quota)
		}
		// over any stretch [s, e] between two due times
		iv := time.Duration(math.Round(1e9 / p.Rate)) // the limiter's time per token
		window := time.Duration(p.Burst) * iv
		for i := range grants {
			for j := range grants {
				s, e := grants[i].due, grants[j].due
				if e.Before(s) {
					continue
				}
				var sum int64
				for _, g := range grants {
					if !g.due.Before(s) && !g.due.After(e) {
						sum += g.n
					}
				}
				var most int64
				switch algo {
				case throttle.TokenBucket:
					most = p.Burst + int64(e.Sub(s)/iv)
				default:
					most = p.Burst * (int64(e.Sub(s)/window) + 2)
				}
				if sum > most {
					t.Fatalf("%s %v: %d tokens granted due within [%s, %s], the most is %d (grants %v)",
						algo, p, sum, s.Sub(start), e.Sub(start), most, grants)
				}
			}
		}
	})
}
