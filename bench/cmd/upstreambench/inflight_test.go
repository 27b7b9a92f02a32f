package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func TestInFlight(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) []time.Time {
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return ts
	}
	tests := []struct {
		name              string
		arrivals, answers []time.Time
		most              int
		wantMean, wantTps float64
		wantSpan          time.Duration
	}{
		// two calls of 200 ms back to back: one in flight all along, 2 in 0.4 s
		{name: "BackToBack", arrivals: at(0, 200), answers: at(200, 400), most: 1, wantMean: 1, wantTps: 5, wantSpan: 400 * time.Millisecond},
		// two at once, then a gap as long as a call: 2 in flight half the time
		{name: "IdleHalfTheTime", arrivals: at(0, 0, 400, 400), answers: at(200, 200, 600, 600), most: 2, wantMean: 4 * 0.2 / 0.6, wantTps: 4 / 0.6, wantSpan: 600 * time.Millisecond},
		{name: "AnswersInAnyOrder", arrivals: at(200, 0), answers: at(400, 200), most: 1, wantMean: 1, wantTps: 5, wantSpan: 400 * time.Millisecond},
		{name: "NoCalls", most: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := inFlight(tt.arrivals, tt.answers, tt.most)
			if f.Most != tt.most || f.Span != tt.wantSpan || math.Abs(f.Mean-tt.wantMean) > 1e-9 || math.Abs(f.Throughput-tt.wantTps) > 1e-9 {
				t.Errorf("inFlight = %+v, want most %d, mean %g, throughput %g/s over %s", f, tt.most, tt.wantMean, tt.wantTps, tt.wantSpan)
			}
		})
	}
}

// The concurrency scenarios end to end, short: the slow upstream counts
// calls in flight and the in-flight table is written. It measures nothing
// (the figures are in BENCHMARKS.md).
func TestConcurrencyScenariosSmoke(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	results, err := run(&out, config{scenarios: []string{"no-concurrency-limit", "concurrency-limit"}, short: true, maxDrain: time.Minute})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(results) != 2 {
		t.Fatalf("got %d results, want 2:\n%s", len(results), out.String())
	}
	for _, r := range results {
		switch {
		case !r.drained:
			t.Errorf("%s: the backlog was not drained:\n%s", r.scenario, out.String())
		case r.seen.done != r.tenant.tasks:
			t.Errorf("%s: %d of %d tasks answered 200:\n%s", r.scenario, r.seen.done, r.tenant.tasks, out.String())
		case r.flight.Most == 0 || r.flight.Throughput == 0:
			t.Errorf("%s: the upstream counted no call in flight (%+v):\n%s", r.scenario, r.flight, out.String())
		}
	}
	for _, row := range []string{"| no-concurrency-limit | acme | 1000/s b100 | no limit, 200 ms | 2 |", "| concurrency-limit | acme | 1000/s b100 c5 | no limit, 200 ms | 2 |"} {
		if !strings.Contains(out.String(), row) {
			t.Errorf("no row %q in the report:\n%s", row, out.String())
		}
	}
}
