package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/tenantstatus"
	"github.com/quotaq/quotaq/throttle"
)

// The tenant status an operator reads says what a throttled tenant's
// put-back tasks wait for, when the next is due and about when its queued
// tasks will have run.
func TestStatusSaysWhatTasksWaitFor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{"slow": {Rate: 0.5, Burst: 1}}})
	b.enqueue(t, "slow", 5)
	var st tenantstatus.Status
	waitFor(t, 20*time.Second, "four tasks put back for their turn", func() bool {
		sts, err := tenantstatus.Collect(ctx, b.limiter, b.inspector, tenantstatus.Options{Tenants: []string{"slow"}, Queues: []string{b.queue}, Asynq: b.rdb})
		if err != nil || len(sts) != 1 {
			t.Fatalf("Collect: %v, %v", sts, err)
		}
		st = sts[0]
		return st.Waiting.ForTurn == 4
	})
	w := st.Waiting
	if w.ForOther != 0 || w.ForSlot != 0 || w.NextDueIn <= 0 || w.NextDueIn > 2*time.Second {
		t.Errorf("waiting %+v: want 4 for their turn only, the next due within 2 s (one every 2 s)", w)
	}
	// the tasks in the queue at 0.5/s
	queued := st.Tasks.Pending + st.Tasks.Scheduled
	if want := time.Duration(queued) * 2 * time.Second; queued == 0 || w.DrainIn != want {
		t.Errorf("drain in %s with %d tasks queued, want %s (at 0.5/s)", w.DrainIn, queued, want)
	}
	// with no worker left to bring them back, the first one's time comes
	// and passes: it is due now, not "none"
	b.stop()
	_ = b.throttler.Close()
	waitFor(t, 10*time.Second, "the next put-back task due now", func() bool {
		sts, err := tenantstatus.Collect(ctx, b.limiter, b.inspector, tenantstatus.Options{Tenants: []string{"slow"}, Queues: []string{b.queue}, Asynq: b.rdb})
		if err != nil || len(sts) != 1 {
			t.Fatalf("Collect: %v, %v", sts, err)
		}
		st = sts[0]
		return st.Waiting.DueNow
	})
	if st.Waiting.NextDueIn != 0 || st.Waiting.ForTurn == 0 {
		t.Errorf("waiting %+v: want tasks waiting, the first due now", st.Waiting)
	}
}
