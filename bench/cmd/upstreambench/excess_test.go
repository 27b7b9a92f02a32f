package main

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// at returns arrivals at these offsets, in seconds, from a fixed instant.
func at(secs ...float64) []time.Time {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	out := make([]time.Time, len(secs))
	for i, s := range secs {
		out[i] = t0.Add(time.Duration(math.Round(s * float64(time.Second))))
	}
	return out
}

func TestWorstExcess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		arrivals    []time.Time
		rate        float64
		burst       int
		excess      float64
		calls       int
		span        time.Duration
		first, last int
	}{
		{name: "NoArrivalsIsTheZeroWindow", rate: 1, burst: 1},
		{name: "OneCallUnderTheBurst", arrivals: at(3), rate: 1, burst: 5, excess: -4, calls: 1},
		{name: "TenCallsAtOneInstantOverABurstOfTwo", arrivals: at(1, 1, 1, 1, 1, 1, 1, 1, 1, 1), rate: 2, burst: 2,
			excess: 8, calls: 10, last: 9},
		{name: "CallsExactlyAtTheRateExceedNothing", arrivals: at(0, 1, 2, 3, 4), rate: 1, burst: 1, excess: 0, calls: 1},
		{name: "TwiceTheRateOverTwoSeconds", arrivals: at(0, 0.5, 1, 1.5, 2), rate: 1, burst: 1,
			excess: 2, calls: 5, span: 2 * time.Second, last: 4},
		{name: "AClumpInTheMiddle", arrivals: at(0, 10, 10.1, 10.2, 20), rate: 1, burst: 1,
			excess: 1.8, calls: 3, span: 200 * time.Millisecond, first: 1, last: 3},
		{name: "UnsortedArrivalsAreSortedFirst", arrivals: at(10.2, 20, 0, 10.1, 10), rate: 1, burst: 1,
			excess: 1.8, calls: 3, span: 200 * time.Millisecond, first: 1, last: 3},
		{name: "TheLongerWindowWinsWhenItExceedsMore", arrivals: at(0, 0, 0, 1, 1, 1), rate: 1, burst: 2,
			excess: 3, calls: 6, span: time.Second, last: 5},
		{name: "FractionalRateAndSpan", arrivals: at(0, 0.25, 0.5), rate: 0.5, burst: 1,
			excess: 1.75, calls: 3, span: 500 * time.Millisecond, last: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := worstExcess(tt.arrivals, tt.rate, tt.burst)
			if math.Abs(w.Excess-tt.excess) > 1e-9 || w.Calls != tt.calls || w.Span != tt.span || w.First != tt.first || w.Last != tt.last {
				t.Errorf("worstExcess = %+v, want excess %g, %d calls in %s, [%d..%d]", w, tt.excess, tt.calls, tt.span, tt.first, tt.last)
			}
		})
	}
}

// The linear scan finds what checking every pair of arrivals finds.
func TestWorstExcessMatchesEveryPair(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		n := 1 + rng.IntN(60)
		secs := make([]float64, n)
		for i := range secs {
			secs[i] = math.Round(rng.Float64()*10*1000) / 1000 // ms steps: ties happen
		}
		rate, burst := 0.5+rng.Float64()*20, 1+rng.IntN(10)
		arr := at(secs...)
		got := worstExcess(arr, rate, burst) // sorts arr
		want := math.Inf(-1)
		for i := range arr {
			for j := i; j < len(arr); j++ {
				want = max(want, float64(j-i+1)-(float64(burst)+rate*arr[j].Sub(arr[i]).Seconds()))
			}
		}
		if math.Abs(got.Excess-want) > 1e-9 {
			t.Fatalf("round %d: worstExcess = %g, every pair gives %g (rate %g, burst %d, arrivals %v)", round, got.Excess, want, rate, burst, secs)
		}
		if w := float64(got.Calls) - (float64(burst) + rate*got.Span.Seconds()); math.Abs(w-got.Excess) > 1e-9 {
			t.Fatalf("round %d: window %+v does not have the excess it reports (%g)", round, got, w)
		}
	}
}
