package e2e

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// TestLoad runs several worker processes over 100 tenants' tasks, 3,000 in
// the short variant and 100,000 with QUOTAQ_E2E_LONG: every task is
// processed exactly once, and every tenant's limit held. Ten tenants have a
// quota (admitted exactly that many until a reset), ten a burst that
// refills in 200 hours (admitted exactly the burst until their policy
// changes), eighty a rate between 20 and 200 per second (never faster, at
// the upstream, than burst + rate x time, with a second's slack for the way
// from the limiter to the upstream). It prints a table, one row per tenant.
func TestLoad(t *testing.T) {
	t.Parallel()
	workers, concurrency, perTenant := 3, 16, 30
	if *long {
		workers, concurrency, perTenant = 4, 50, 1000
	}
	s := newStage(t)
	rng := rand.New(rand.NewPCG(9, 9))
	type tenant struct {
		id     string
		policy throttle.Policy
		class  string
	}
	var tenants []tenant
	for i := 0; i < 100; i++ {
		var tn tenant
		switch {
		case i < 10:
			tn = tenant{fmt.Sprintf("quota-%02d", i), throttle.Policy{Rate: 1000, Burst: 1000, Quota: int64(perTenant / 2)}, "quota"}
		case i < 20:
			burst := int64(perTenant / 3) // fills in 200 hours: no refill while the test runs
			tn = tenant{fmt.Sprintf("slow-%02d", i), throttle.Policy{Rate: float64(burst) / (200 * 3600), Burst: burst}, "slow"}
		default:
			rates := []float64{20, 50, 100, 200}
			bursts := []int64{5, 10, 20}
			tn = tenant{fmt.Sprintf("flow-%02d", i), throttle.Policy{Rate: rates[rng.IntN(len(rates))], Burst: bursts[rng.IntN(len(bursts))]}, "flow"}
		}
		if i%7 == 3 { // hostile-looking ids too: they must stay apart
			tn.id = "{" + tn.id + "}:x"
		}
		tenants = append(tenants, tn)
	}
	// policies in one go through the limiter (the CLI sets them one by
	// one; TestRedisRestartedWithAOF and others use it)
	for _, tn := range tenants {
		if err := s.lim.SetPolicy(t.Context(), tn.id, tn.policy); err != nil {
			t.Fatal(err)
		}
	}
	var tasks []task
	for round := 0; round < perTenant; round++ {
		for _, tn := range tenants {
			tasks = append(tasks, task{Seq: len(tasks), Tenant: tn.id})
		}
	}
	rng.Shuffle(len(tasks), func(i, j int) { tasks[i], tasks[j] = tasks[j], tasks[i] })

	var procs []*proc
	for i := 0; i < workers; i++ {
		procs = append(procs, startWorker(t, fmt.Sprint("W", i), s.env, "--concurrency", fmt.Sprint(concurrency)))
	}
	start := time.Now()
	s.enqueue(t, tasks)
	enqueued := time.Since(start)

	var flowSeqs []int
	isFlow := map[string]bool{}
	for _, tn := range tenants {
		isFlow[tn.id] = tn.class == "flow"
	}
	for _, tk := range tasks {
		if isFlow[tk.Tenant] {
			flowSeqs = append(flowSeqs, tk.Seq)
		}
	}
	s.drain(t, "default", flowSeqs, 10*time.Minute)
	flowDone := time.Since(start)

	// capped tenants: exactly their cap, however many workers asked
	for _, tn := range tenants {
		switch tn.class {
		case "quota":
			if got := s.up.doneFor(tn.id); int64(got) != tn.policy.Quota {
				t.Errorf("tenant %q: %d tasks ran, its quota is %d", tn.id, got, tn.policy.Quota)
			}
		case "slow":
			if got := s.up.doneFor(tn.id); int64(got) != tn.policy.Burst {
				t.Errorf("tenant %q: %d tasks ran, its burst is %d (refilled in 200 h)", tn.id, got, tn.policy.Burst)
			}
		case "flow":
			checkRate(t, s.up, tn.id, tn.policy.Rate, int(tn.policy.Burst), time.Second)
		}
	}
	var allowed, throttled, rethrottled float64
	for _, p := range procs {
		allowed += p.metric("quotaq_worker_allowed_total")
		throttled += p.metric("quotaq_worker_throttled_total")
		rethrottled += p.metric("quotaq_worker_rethrottled_total")
	}

	// lift the caps; everything left must still be there
	var quotaIDs []string
	for _, tn := range tenants {
		switch tn.class {
		case "quota":
			quotaIDs = append(quotaIDs, tn.id)
		case "slow":
			if err := s.lim.SetPolicy(t.Context(), tn.id, throttle.Policy{Rate: 1000, Burst: 1000}); err != nil {
				t.Fatal(err)
			}
			if err := s.lim.Reset(t.Context(), tn.id); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustEnqueue(t, s.env, "", append([]string{"quota", "reset", "--now"}, quotaIDs...)...)
	if _, err := s.insp.RunAllScheduledTasks("default"); err != nil {
		t.Fatal(err)
	}
	s.drain(t, "default", seqsOf(tasks), 5*time.Minute)
	if n := checkEmpty(t, s.insp, "default"); n != 0 {
		t.Fatalf("%d tasks left active or retrying without any fault", n)
	}

	// the table
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s %-6s %-44s %5s %5s %5s %8s\n", "tenant", "class", "policy", "tasks", "ran", "dup", "span")
	byTenant := map[string][]time.Time{}
	s.up.mu.Lock()
	for id, at := range s.up.arrivals {
		byTenant[id] = append([]time.Time(nil), at...)
	}
	s.up.mu.Unlock()
	for _, tn := range tenants {
		at := byTenant[tn.id]
		sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
		span := time.Duration(0)
		if len(at) > 1 {
			span = at[len(at)-1].Sub(at[0])
		}
		fmt.Fprintf(&b, "%-16s %-6s %-44s %5d %5d %5d %8s\n", tn.id, tn.class, tn.policy, perTenant, len(at), len(at)-perTenant, span.Round(time.Millisecond))
	}
	f := s.up.figures(seqsOf(tasks))
	extra := fmt.Sprintf("%d workers x %d, 100 tenants; enqueued in %s, flowing tenants done in %s; %.0f admitted, %.0f put back (%.0f again after a booking) before the caps were lifted: %.2f dequeues per admitted task",
		workers, concurrency, enqueued.Round(time.Millisecond), flowDone.Round(time.Millisecond), allowed, throttled, rethrottled, (allowed+throttled)/max(allowed, 1))
	report(t, f, extra)
	t.Logf("per tenant:\n%s", b.String())
	if f.Lost != 0 || f.Duplicated != 0 || f.Processed != len(tasks) {
		t.Fatalf("load: %s", f)
	}
}
