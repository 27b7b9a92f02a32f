package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// One short scenario end to end: the binaries build, the worker's http:call
// tasks reach the fake upstream, and the report adds up. It measures
// nothing (the benchmark is run by hand, see BENCHMARKS.md).
func TestRunSmoke(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	results, err := run(&out, config{scenarios: []string{"steady"}, short: true, maxDrain: time.Minute})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(results) != 1 {
		t.Fatalf("got %d results, want 1:\n%s", len(results), out.String())
	}
	r := results[0]
	calls := len(r.seen.arrivals)
	switch {
	case !r.drained:
		t.Errorf("the backlog was not drained:\n%s", out.String())
	case calls == 0:
		t.Errorf("no call reached the upstream:\n%s", out.String())
	case r.seen.done != r.tenant.tasks || r.seen.duplicated != 0:
		t.Errorf("%d of %d tasks answered 200, %d more than once; want each exactly once:\n%s",
			r.seen.done, r.tenant.tasks, r.seen.duplicated, out.String())
	case calls != r.seen.done+r.seen.refused:
		t.Errorf("%d calls, but %d answered 200 and %d refused:\n%s", calls, r.seen.done, r.seen.refused, out.String())
	case r.dequeues.allowed < float64(calls):
		t.Errorf("the workers' counters show %.0f tasks let through for %d calls:\n%s", r.dequeues.allowed, calls, out.String())
	}
	if !strings.Contains(out.String(), "| steady | acme | 20/s b5 | 20/s b5 |") {
		t.Errorf("no steady row in the report:\n%s", out.String())
	}
}

func TestDequeuesOf(t *testing.T) {
	t.Parallel()
	metrics := `# HELP quotaq_worker_allowed_total Tasks the throttle let through.
# TYPE quotaq_worker_allowed_total counter
quotaq_worker_allowed_total{tenant="acme",type="http:call",via="now"} 7
quotaq_worker_allowed_total{tenant="beta",type="http:call",via="now"} 100
quotaq_worker_throttled_total{reason="rate",tenant="acme",type="http:call"} 5
quotaq_worker_throttled_total{reason="upstream",tenant="acme",type="http:call"} 2
quotaq_worker_waited_in_process_total{tenant="acme",type="http:call"} 3
quotaq_worker_rethrottled_total{tenant="acme",type="http:call"} 1
go_goroutines 12
`
	tests := []struct {
		name     string
		readings []string // one /metrics page per worker
		tenant   string
		want     float64
	}{
		// ran 7, told to wait 5 (rate) of which 3 waited in the worker and ran:
		// 7 + 5 - 3; the upstream's 2 ran and are among the 7
		{name: "RanPlusPutBackNotCountingUpstreamOrWaitsTwice", readings: []string{metrics}, tenant: "acme", want: 9},
		{name: "SummedOverWorkers", readings: []string{metrics, metrics}, tenant: "acme", want: 18},
		{name: "OnlyTheTenantsOwnSeries", readings: []string{metrics}, tenant: "beta", want: 100},
		{name: "NoSeriesNoDequeues", readings: []string{metrics}, tenant: "gamma", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var rs [][]sample
			for _, m := range tt.readings {
				rs = append(rs, parseMetrics(strings.NewReader(m)))
			}
			if got := dequeuesOf(tt.tenant, rs...).total(); got != tt.want {
				t.Errorf("dequeues of %s = %g, want %g", tt.tenant, got, tt.want)
			}
		})
	}
}
