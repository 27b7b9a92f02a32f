package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// TestCluster runs everything on a real 3-master Redis Cluster: two worker
// processes (asynq's cluster client), the schedule in one of them, and the
// CLI. A tenant's quota holds exactly across both workers; a schedule entry
// resets it every 2 seconds and the tasks it held back run, never more than
// the quota per reset; tasks that also spend a shared upstream (another
// slot, so the limiter decides one id at a time and gives back on refusal)
// stop exactly at the upstream's quota and charge no tenant for a refusal;
// the CLI sets policies, reads status and resets quotas on the cluster.
func TestCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.NewCluster(t, 3)
	rc := cl.Client(t)
	s := &stage{
		env:  []string{"REDIS_CLUSTER_ADDRS=" + strings.Join(cl.Addrs, ",")},
		rdb:  rc,
		insp: asynq.NewInspector(asynq.RedisClusterClientOpt{Addrs: cl.Addrs}),
		lim:  throttle.New(rc),
		up:   newUpstream(t),
	}
	t.Cleanup(func() { _ = s.insp.Close() })

	const quota = 4
	s.policy(t, "metered", throttle.Policy{Rate: 1000, Burst: 1000, Quota: quota})
	s.policy(t, throttle.Upstream("api:shared"), throttle.Policy{Rate: 1000, Burst: 1000, Quota: 10})
	for _, id := range []string{"t-1", "t-{2}", "t:3"} {
		s.policy(t, id, throttle.Policy{Rate: 1.0 / 3600, Burst: 100})
	}
	sched := filepath.Join(t.TempDir(), "schedule.yaml")
	if err := os.WriteFile(sched, []byte(`entries:
  - name: metered-reset
    cron: "@every 2s"
    action: reset
    tenants: [metered]
    catch_up: 0s
`), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startWorker(t, "A", s.env, "--concurrency", "4", "--schedule", sched, "--upstreams", "api:*")
	b := startWorker(t, "B", s.env, "--concurrency", "4", "--upstreams", "api:*")

	// once the schedule has reset the quota, the limiter knows when the
	// next reset is due and tells refused tasks to come back then (before
	// the first one it does not know, and they would wait a minute)
	eventually(t, time.Minute, "the first scheduled reset", func() bool { return len(resetTimes(a.logs.String()+b.logs.String())) > 0 })
	metered := tasksFor("metered", "", 0, 3*quota)
	s.enqueue(t, metered)
	var shared []task
	for i, id := range []string{"t-1", "t-{2}", "t:3"} {
		shared = append(shared, tasksFor(id, "", 100+10*i, 8)...)
	}
	var lines string
	for _, l := range strings.SplitAfter(s.up.ndjson(shared), "\n") {
		lines += strings.Replace(l, `{`, `{"headers":{"upstream":"api:shared"},`, 1)
	}
	mustEnqueue(t, s.env, lines, "--file", "-")

	// the schedule's resets let the metered tenant through, quota by quota
	drain(t, s.up, s.insp, "default", seqsOf(metered), 2*time.Minute)
	resets := resetTimes(a.logs.String() + b.logs.String())
	s.up.mu.Lock()
	at := append([]time.Time(nil), s.up.arrivals["metered"]...)
	s.up.mu.Unlock()
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	for k, when := range at {
		need := int(math.Ceil(float64(k+1)/quota)) - 1 // resets needed before the (k+1)-th task
		done := 0
		for _, r := range resets {
			if r.Before(when.Add(50 * time.Millisecond)) {
				done++
			}
		}
		if done < need {
			t.Fatalf("task %d of the metered tenant ran at %s after %d quota resets; a quota of %d needs %d", k+1, when.Format("15:04:05.000"), done, quota, need)
		}
	}

	// the shared upstream: exactly its quota, from all three tenants
	eventually(t, time.Minute, "the upstream's quota used", func() bool {
		r, err := s.lim.Peek(t.Context(), throttle.Upstream("api:shared"))
		return err == nil && r.QuotaRemaining == 0
	})
	eventually(t, time.Minute, "the shared tasks waiting", func() bool {
		q, err := s.insp.GetQueueInfo("default")
		return err == nil && q.Pending+q.Active == 0
	})
	ran := 0
	for _, id := range []string{"t-1", "t-{2}", "t:3"} {
		n := s.up.doneFor(id)
		ran += n
		r, err := s.lim.Peek(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if used := 100 - r.Remaining; used != int64(n) {
			t.Errorf("tenant %q: %d tokens gone, %d tasks ran: a refusal of the upstream charged the tenant", id, used, n)
		}
	}
	if ran != 10 {
		t.Fatalf("%d tasks spending the shared upstream ran, its quota is 10", ran)
	}

	// the CLI on the cluster
	out := mustEnqueue(t, s.env, "", "status", "--json")
	var status []map[string]any
	if err := json.Unmarshal([]byte(out), &status); err != nil || len(status) < 5 {
		t.Fatalf("status --json on the cluster: %v\n%s", err, out)
	}
	mustEnqueue(t, s.env, "", "policy", "set", "upstream:api:shared", "--quota", "0")
	mustEnqueue(t, s.env, "", "quota", "reset", "--now", "upstream:api:shared")
	if _, err := s.insp.RunAllScheduledTasks("default"); err != nil {
		t.Fatal(err)
	}
	drain(t, s.up, s.insp, "default", seqsOf(shared), time.Minute)
	all := append(seqsOf(metered), seqsOf(shared)...)
	f := s.up.figures(all)
	report(t, f, fmt.Sprintf("%d scheduled resets; %d tasks through the shared upstream's quota of 10 before it was lifted", len(resets), ran))
	if f.Lost != 0 || f.Duplicated != 0 {
		t.Fatalf("on the cluster: %s", f)
	}
}

// resetTimes returns when the worker logged a quota reset by the scheduler.
func resetTimes(log string) []time.Time {
	var out []time.Time
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `msg="scheduler: quotas reset"`) {
			continue
		}
		f := strings.Fields(l)
		if len(f) == 0 || !strings.HasPrefix(f[0], "time=") {
			continue
		}
		if ts, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time=")); err == nil {
			out = append(out, ts)
		}
	}
	return out
}
