package main

import (
	"slices"
	"time"
)

// flight is how a tenant's calls filled the upstream, which answers each
// call a fixed latency after it arrives: from the first arrival to the last
// answer (the span), how many calls were in flight.
type flight struct {
	Most       int           // the most in flight at once, counted live by the upstream
	Mean       float64       // in flight on average over the span
	Span       time.Duration // first arrival to last answer
	Throughput float64       // calls answered a second over the span
}

// inFlight measures calls that arrived at arrivals and were answered at
// answers (one answer per arrival, both in any order); most is the
// upstream's live count. No calls: the zero flight.
func inFlight(arrivals, answers []time.Time, most int) flight {
	if len(arrivals) == 0 || len(answers) == 0 {
		return flight{Most: most}
	}
	first := slices.MinFunc(arrivals, time.Time.Compare)
	last := slices.MaxFunc(answers, time.Time.Compare)
	f := flight{Most: most, Span: last.Sub(first)}
	if f.Span <= 0 {
		return f
	}
	var busy time.Duration // the sum of every answered call's time in flight
	for _, a := range answers {
		busy += a.Sub(first)
	}
	for _, a := range arrivals[:min(len(arrivals), len(answers))] {
		busy -= a.Sub(first)
	}
	f.Mean = busy.Seconds() / f.Span.Seconds()
	f.Throughput = float64(len(answers)) / f.Span.Seconds()
	return f
}
