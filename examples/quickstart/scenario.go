package main

import (
	"fmt"
	"time"

	"github.com/quotaq/quotaq/examples/internal/fakeapi"
	"github.com/quotaq/quotaq/throttle"
)

// tenant is one customer of the demo: the policy the worker enforces for it,
// the plan the upstream API sells to its API key, and its backlog.
type tenant struct {
	ID     string
	Policy throttle.Policy // what the worker lets through
	Plan   fakeapi.Plan    // what the upstream accepts from this key
	Tasks  int             // backlog enqueued at the start
}

// scenario is a whole run.
type scenario struct {
	Tenants []tenant
	// ResetEvery is the cron spec of the scheduler's quota reset of the
	// tenants whose policy has a quota ("@every 10s").
	ResetEvery string
	// Timeout ends a run that has not processed its backlog by then.
	Timeout time.Duration
	// Concurrency is the worker's number of tasks at once.
	Concurrency int
}

// fullScenario takes about 20-25 seconds: acme and globex are limited by
// their rate, initech by a quota of 40 that the scheduler resets every 10 s.
// Each policy sits well under the upstream's plan for the key: the worker
// starts a task at its slot, but on a busy machine the calls of a tenant can
// reach the API a little late and then close together, and a window limit
// counts them where they arrive. The headroom absorbs that, so the upstream
// never has to say 429.
func fullScenario() scenario {
	return scenario{
		Tenants: []tenant{
			{ID: "acme", Policy: throttle.Policy{Rate: 20, Burst: 1}, Plan: fakeapi.Plan{N: 35, Per: time.Second}, Tasks: 400},
			{ID: "globex", Policy: throttle.Policy{Rate: 5, Burst: 1}, Plan: fakeapi.Plan{N: 10, Per: time.Second}, Tasks: 100},
			{ID: "initech", Policy: throttle.Policy{Rate: 10, Burst: 1, Quota: 40}, Plan: fakeapi.Plan{N: 18, Per: time.Second}, Tasks: 100},
		},
		ResetEvery:  "@every 10s",
		Timeout:     60 * time.Second,
		Concurrency: 20,
	}
}

// shortScenario is the same story in about 5 seconds, for CI.
func shortScenario() scenario {
	return scenario{
		Tenants: []tenant{
			{ID: "acme", Policy: throttle.Policy{Rate: 20, Burst: 1}, Plan: fakeapi.Plan{N: 35, Per: time.Second}, Tasks: 60},
			{ID: "globex", Policy: throttle.Policy{Rate: 5, Burst: 1}, Plan: fakeapi.Plan{N: 10, Per: time.Second}, Tasks: 15},
			{ID: "initech", Policy: throttle.Policy{Rate: 10, Burst: 1, Quota: 10}, Plan: fakeapi.Plan{N: 18, Per: time.Second}, Tasks: 25},
		},
		ResetEvery:  "@every 2s",
		Timeout:     90 * time.Second,
		Concurrency: 20,
	}
}

func (s scenario) total() int {
	n := 0
	for _, t := range s.Tenants {
		n += t.Tasks
	}
	return n
}

// describePolicy is a policy in a table cell: "20/s", "10/s, 40 per reset".
func describePolicy(p throttle.Policy) string {
	s := fmt.Sprintf("%g/s", p.Rate)
	if p.Burst > 1 {
		s += fmt.Sprintf(" burst %d", p.Burst)
	}
	if p.Quota > 0 {
		if p.QuotaPeriod > 0 {
			s += fmt.Sprintf(", %d per %s", p.Quota, p.QuotaPeriod)
		} else {
			s += fmt.Sprintf(", quota %d", p.Quota)
		}
	}
	return s
}
