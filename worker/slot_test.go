package worker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// A tenant with a concurrency limit: the handlers themselves never see more
// of its tasks at once than the limit, every task runs once and none fails,
// and a task waiting for a slot is woken when one frees, not when the slots'
// TTL would have run out (30 s here, longer than the test waits).
func TestConcurrencyLimitsTasksInFlight(t *testing.T) {
	t.Parallel()
	const limit, tasks = 3, 24
	var inFlight, most atomic.Int64
	var b *testBundle
	b = setup(t, bundleConfig{
		policies: map[string]throttle.Policy{"acme": {Rate: 1000, Burst: 100, Concurrency: limit}},
		opts:     []worker.Option{worker.WithSlotTTL(30 * time.Second)},
		asynqCfg: asynq.Config{Concurrency: 10},
		handler: func(ctx context.Context, task *asynq.Task) error {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			if held := b.counter(t, "quotaq_worker_slots_held"); held < 1 || held > limit {
				t.Errorf("slots_held = %v while a task runs, want 1 to %d", held, limit)
			}
			time.Sleep(50 * time.Millisecond) // the call
			return nil
		},
	})
	b.enqueue(t, "acme", tasks, asynq.MaxRetry(0))
	q := b.waitQueueDone(t, 20*time.Second)
	if q.Processed != tasks || q.Archived != 0 || q.Failed != 0 {
		t.Errorf("processed=%d archived=%d failed=%d, want %d 0 0", q.Processed, q.Archived, q.Failed, tasks)
	}
	if got := b.runs.count(); got != tasks {
		t.Errorf("%d handler runs for %d tasks, want one each", got, tasks)
	}
	if most.Load() > limit {
		t.Errorf("%d tasks in flight at once, more than the limit %d", most.Load(), limit)
	}
	if errs := b.errs.list(); len(errs) != 0 {
		t.Errorf("asynq saw errors: %v", errs)
	}
	if n := b.counter(t, "quotaq_worker_throttled_total", "reason", "concurrency"); n == 0 {
		t.Errorf("throttled_total{reason=concurrency} = 0: no task waited for a slot, the test did not reach the limit")
	}
	if n := b.counter(t, "quotaq_worker_slots_held"); n != 0 {
		t.Errorf("slots_held = %v after every task returned, want 0", n)
	}
}

// A worker that died while its task held a slot (here: a slot taken and
// never renewed nor released) holds it no longer than the slot's TTL: the
// tasks waiting for it come back when it runs out, and all run.
func TestSlotOfADeadWorkerFreesWhenItRunsOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, bundleConfig{
		policies: map[string]throttle.Policy{"acme": {Rate: 1000, Burst: 100, Concurrency: 1}},
		noStart:  true,
	})
	r, err := b.limiter.Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1, Slot: "dead-worker-task", SlotTTL: time.Second})
	if err != nil || !r.Result.HoldsSlot {
		t.Fatalf("the dead worker's slot: %+v, %v", r, err)
	}
	start := time.Now()
	b.start(t)
	b.enqueue(t, "acme", 3, asynq.MaxRetry(0))
	q := b.waitQueueDone(t, 15*time.Second)
	if q.Processed != 3 || q.Archived != 0 {
		t.Errorf("processed=%d archived=%d, want 3 0", q.Processed, q.Archived)
	}
	if first := b.runs.list()[0].at.Sub(start); first < 900*time.Millisecond {
		t.Errorf("the first task ran %s after the dead worker's slot was taken, before its 1 s TTL ran out", first)
	}
}

// Every decision's latency is observed, and the build is described from
// the start.
func TestDecisionLatencyAndBuildInfo(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{})
	if n := b.counter(t, "quotaq_build_info"); n != 1 {
		t.Errorf("quotaq_build_info = %v before any task, want 1", n)
	}
	b.enqueue(t, "acme", 3)
	b.waitQueueDone(t, 20*time.Second)
	mfs, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var observed uint64
	for _, mf := range mfs {
		if mf.GetName() == "quotaq_worker_decision_seconds" {
			for _, m := range mf.GetMetric() {
				observed += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if observed != 3 {
		t.Errorf("decision_seconds observed %d decisions, want 3", observed)
	}
}

// A task longer than its slot's TTL keeps the slot by renewing it, also
// when one of its ids (its upstream) has no limit and so holds no slot.
func TestLongTaskKeepsItsSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var b *testBundle
	var heldLate atomic.Int64
	b = setup(t, bundleConfig{
		policies: map[string]throttle.Policy{"acme": {Rate: 100, Burst: 100, Concurrency: 1}},
		opts: []worker.Option{
			worker.WithSlotTTL(300 * time.Millisecond),
			worker.WithUpstream(func(*asynq.Task) []string { return []string{"api.example"} }),
			worker.WithAllowedUpstreams("api.*"),
		},
		handler: func(ctx context.Context, task *asynq.Task) error {
			time.Sleep(time.Second) // three TTLs
			n, err := b.limiter.InFlight(ctx, "acme")
			if err != nil {
				t.Error(err)
			}
			heldLate.Store(n)
			return nil
		},
	})
	b.enqueue(t, "acme", 1)
	b.waitQueueDone(t, 20*time.Second)
	if heldLate.Load() != 1 {
		t.Errorf("in flight after three slot TTLs: %d, want 1 (renewed)", heldLate.Load())
	}
	if strings.Contains(b.logs.String(), "ran out") {
		t.Errorf("logs say a slot ran out:\n%s", b.logs.String())
	}
	if n, err := b.limiter.InFlight(ctx, "acme"); err != nil || n != 0 {
		t.Errorf("in flight after the task: %d, %v; want 0 (released)", n, err)
	}
}
