package main

import (
	"fmt"
	"time"

	"github.com/quotaq/quotaq/examples/internal/fakeapi"
	"github.com/quotaq/quotaq/throttle"
)

// Row is one tenant's line of the table.
type Row struct {
	ID     string
	Policy throttle.Policy
	Plan   fakeapi.Plan

	Tasks     int // enqueued
	Processed int // done: the upstream answered 2xx

	// From the worker's metrics (quotaq_worker_*_total{tenant=...}).
	Throttled   int64 // the limiter (or the upstream) said wait
	Requeued    int64 // tasks put back in the queue, to come back at their slot
	Rethrottled int64 // tasks that came back and had to wait again

	// Rate is the achieved rate, tasks per second: over the last two
	// seconds while running, first to last task in the summary.
	Rate float64

	QuotaLeft  int64         // -1: no quota
	QuotaReset time.Duration // time until the scheduler's next reset; 0 unknown

	// The upstream's answers to this tenant's API key.
	Served  int64
	Refused int64 // 429 Too Many Requests
}

// Summary is the state of a run: live while it runs, final at the end.
type Summary struct {
	Elapsed  time.Duration
	Redis    string
	Embedded bool
	Upstream string
	Rows     []Row
	Resets   int64 // quota resets run by the scheduler's tasks
	Failed   int64 // tasks that failed (not throttled: failed)
	Final    bool
	TimedOut bool // the backlog was not done within the scenario's timeout
	Stopped  bool // interrupted (Ctrl-C)
}

// Processed is the number of tasks done, all tenants.
func (s Summary) Processed() int {
	n := 0
	for _, r := range s.Rows {
		n += r.Processed
	}
	return n
}

// rateSlack is how far above its policy a tenant's measured rate may be before
// the run counts as over-sending. The limiter is exact on Redis's clock; the
// rate here is measured in the handler, after the HTTP call, so a busy
// machine's scheduling shows up as a few percent.
const rateSlack = 1.25

// Problems lists what went wrong in a final summary: tasks not processed,
// a 429 from the upstream (the worker sent more than the plan), a rate above
// a policy, a quota overrun, a quota the scheduler never reset, failures.
// None means the run showed what it should.
func (s Summary) Problems() []string {
	var out []string
	if s.Stopped {
		out = append(out, "interrupted before the backlog was done")
	} else if s.TimedOut {
		out = append(out, fmt.Sprintf("the backlog was not done after %s", s.Elapsed.Round(time.Second)))
	}
	quotas := false
	for _, r := range s.Rows {
		if r.Processed < r.Tasks {
			out = append(out, fmt.Sprintf("%s: %d of %d tasks processed", r.ID, r.Processed, r.Tasks))
		}
		if r.Refused > 0 {
			out = append(out, fmt.Sprintf("%s: the upstream answered 429 Too Many Requests %d times: the worker sent more than the plan %s", r.ID, r.Refused, r.Plan))
		}
		if r.Processed >= 10 && r.Rate > r.Policy.Rate*rateSlack {
			out = append(out, fmt.Sprintf("%s: ran at %.1f/s, above its policy's %g/s", r.ID, r.Rate, r.Policy.Rate))
		}
		if r.Policy.Quota > 0 {
			quotas = true
			if allowed := r.Policy.Quota * (s.Resets + 1); int64(r.Processed) > allowed {
				out = append(out, fmt.Sprintf("%s: %d tasks ran with a quota of %d and %d resets (at most %d)", r.ID, r.Processed, r.Policy.Quota, s.Resets, allowed))
			}
		}
	}
	if quotas && s.Resets == 0 {
		out = append(out, "the scheduler never reset a quota")
	}
	if s.Failed > 0 {
		out = append(out, fmt.Sprintf("%d tasks failed", s.Failed))
	}
	return out
}
