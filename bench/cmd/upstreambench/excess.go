package main

import (
	"slices"
	"time"
)

// window is the stretch of arrivals where calls most exceeded a token
// bucket: calls a[First..Last] (indexes into the sorted arrivals).
type window struct {
	Excess      float64       // Calls - (burst + rate × Span); <= 0 when the bucket was kept
	Calls       int           // Last - First + 1
	Span        time.Duration // a[Last] - a[First]
	First, Last int
}

// worstExcess returns the window of arrivals that most exceeds a token
// bucket of rate tokens a second and burst tokens: over every pair i <= j of
// the sorted arrivals, the calls a[i..j] minus what the bucket admits in
// that time, burst + rate × (a[j] - a[i]). It is exact: with
// k(x) = x - rate × a[x], the excess of (i, j) is k(j) - k(i) + 1 - burst,
// so the worst j keeps the smallest k(i) seen up to it. arrivals is sorted
// in place. No arrivals: the zero window.
func worstExcess(arrivals []time.Time, rate float64, burst int) window {
	if len(arrivals) == 0 {
		return window{}
	}
	slices.SortFunc(arrivals, func(a, b time.Time) int { return a.Compare(b) })
	t0 := arrivals[0]
	k := func(x int) float64 { return float64(x) - rate*arrivals[x].Sub(t0).Seconds() }
	best := window{Excess: 1 - float64(burst), Calls: 1}
	lowest := 0 // index i <= j of the smallest k(i)
	for j := range arrivals {
		if k(j) < k(lowest) {
			lowest = j
		}
		if e := k(j) - k(lowest) + 1 - float64(burst); e > best.Excess {
			best = window{Excess: e, Calls: j - lowest + 1, Span: arrivals[j].Sub(arrivals[lowest]), First: lowest, Last: j}
		}
	}
	return best
}
