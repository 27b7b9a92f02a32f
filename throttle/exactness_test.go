package throttle_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/quotaq/quotaq/throttle"
)

// On a long random trace of calls (sizes and gaps), every decision matches
// golang.org/x/time/rate driven by the same clock. Rates are chosen so the
// time per token is a whole number of nanoseconds, as the limiter keeps it.
//
// x/time/rate counts tokens in float64; where its count lands within 1e-9 of
// the cost, the two may honestly round apart. Those steps are counted, both
// limiters restarted, and the count must stay tiny.
func TestDecisionsMatchReferenceTokenBucket(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rate  float64
		burst int64
	}{
		{10, 5}, {4, 1}, {50, 20}, {0.5, 3}, {1000, 100}, {3.2, 7},
	}
	for _, tt := range tests {
		t.Run(throttle.Policy{Rate: tt.rate, Burst: tt.burst}.String(), func(t *testing.T) {
			t.Parallel()
			l, m := setupClock(t, t0, throttle.WithDefaultPolicy(throttle.Policy{Rate: tt.rate, Burst: tt.burst}))
			ref := rate.NewLimiter(rate.Limit(tt.rate), int(tt.burst))
			rng := rand.New(rand.NewPCG(uint64(tt.burst), uint64(tt.rate*1000)))
			meanGap := time.Duration(float64(time.Second) / tt.rate) // about one token a call
			now := t0
			const steps = 2000
			admitted, ambiguous := 0, 0
			for i := 0; i < steps; i++ {
				now = now.Add(time.Duration(rng.Int64N(int64(2*meanGap)/1000)) * time.Microsecond)
				n := 1 + rng.Int64N(tt.burst+1) // sometimes above the burst
				m.SetTime(now)
				before := ref.TokensAt(now)
				want := ref.AllowN(now, int(n))
				got := mustAllowN(t, l, "acme", n)
				if got.Allowed == want {
					if want {
						admitted++
					}
					continue
				}
				if math.Abs(before-float64(n)) < 1e-9 {
					ambiguous++
					ref = rate.NewLimiter(rate.Limit(tt.rate), int(tt.burst))
					ref.AllowN(now, int(tt.burst)) // empty, like ours after a restart below
					if err := l.Reset(t.Context(), "acme"); err != nil {
						t.Fatal(err)
					}
					mustAllowN(t, l, "acme", tt.burst)
					continue
				}
				t.Fatalf("step %d at +%s, n=%d: quotaq allowed=%v, x/time/rate allowed=%v (reference tokens %.9f)",
					i, now.Sub(t0), n, got.Allowed, want, before)
			}
			if ambiguous > 3 {
				t.Fatalf("%d steps on an exact boundary: too many for rounding", ambiguous)
			}
			if admitted < steps/10 || admitted > steps*9/10 {
				t.Fatalf("trace admitted %d of %d: not a test of both answers", admitted, steps)
			}
			t.Logf("%d steps, %d admitted, %d on a rounding boundary", steps, admitted, ambiguous)
		})
	}
}
