package worker_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// Tasks parked until their quota's period ends (a day here) run as soon as
// the quota is reset and Release is called, at the bucket's pace; without
// Release they would wait for the day to end.
func TestQuotaResetReleasesParkedTasks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tenant := "release-" + strconv.FormatInt(time.Now().UnixNano(), 36) // Release looks in every queue of the server
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{
		tenant: {Rate: 50, Burst: 5, Quota: 4, QuotaPeriod: 24 * time.Hour},
	}})
	b.enqueue(t, tenant, 10)
	waitFor(t, 10*time.Second, "the quota's 4 tasks to run and the rest to be parked", func() bool {
		q, err := b.inspector.GetQueueInfo(b.queue)
		return err == nil && len(b.runs.list()) == 4 && q.Scheduled == 6 && q.Active == 0 && q.Pending == 0
	})
	if err := b.limiter.ResetQuota(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	n, err := b.throttler.Release(ctx, tenant)
	if err != nil || n != 6 {
		t.Fatalf("Release: %d, %v; want the 6 parked tasks", n, err)
	}
	// the new period's 4 run; the other 2 are parked again
	waitFor(t, 10*time.Second, "4 more tasks to run after the reset", func() bool {
		q, err := b.inspector.GetQueueInfo(b.queue)
		return err == nil && len(b.runs.list()) == 8 && q.Scheduled == 2 && q.Active == 0 && q.Pending == 0
	})
	if st := b.throttler.Stats(); st.Archived != 0 || st.Rethrottled > 2 {
		t.Fatalf("stats %+v: want none archived, at most the 2 parked again counted as re-throttled", st)
	}
}
