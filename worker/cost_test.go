package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// costPolicy refills one token per 1000 s, so what a test reads in the
// bucket is what its tasks took.
var costPolicy = throttle.Policy{Rate: 0.001, Burst: 10, Quota: 100}

func costTask(tenant, cost string) *asynq.Task {
	return asynq.NewTaskWithHeaders("job", nil, map[string]string{worker.TenantHeader: tenant, worker.CostHeader: cost})
}

// peekCost returns the tokens and quota units left to tenant.
func peekCost(t *testing.T, l *throttle.Limiter, tenant string) (tokens, quota int64) {
	t.Helper()
	r, err := l.Peek(context.Background(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	return r.Remaining, r.QuotaRemaining
}

// TestCostHeaderIsCharged: a task whose "cost" header says 5 takes 5 tokens
// and 5 quota units, with no cost function of the user's; a task without
// the header takes 1.
func TestCostHeaderIsCharged(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{"five": costPolicy, "one": costPolicy}})
	if _, err := b.client.Enqueue(costTask("five", "5"), asynq.Queue(b.queue)); err != nil {
		t.Fatal(err)
	}
	b.enqueue(t, "one", 1)
	b.waitQueueDone(t, 10*time.Second)
	if n := b.runs.count(); n != 2 {
		t.Fatalf("%d tasks ran, want 2", n)
	}
	if tokens, quota := peekCost(t, b.limiter, "five"); tokens != 5 || quota != 95 {
		t.Errorf("after a task of cost 5: %d tokens, %d quota units left; want 5 and 95", tokens, quota)
	}
	if tokens, quota := peekCost(t, b.limiter, "one"); tokens != 9 || quota != 99 {
		t.Errorf("after a task without a cost: %d tokens, %d quota units left; want 9 and 99", tokens, quota)
	}
}

// TestCostOfFiveTakesHalfABurstOfTen: with a burst of 10, two tasks of cost 5
// run and a third waits for tokens.
func TestCostOfFiveTakesHalfABurstOfTen(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{"acme": costPolicy}})
	for range 3 {
		if _, err := b.client.Enqueue(costTask("acme", "5"), asynq.Queue(b.queue), asynq.MaxRetry(0)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "two tasks to run and one to be put back", func() bool {
		q, err := b.inspector.GetQueueInfo(b.queue)
		return err == nil && b.runs.count() == 2 && q.Scheduled == 1 && q.Active == 0 && q.Pending == 0
	})
	if st := b.throttler.Stats(); st.Throttled != 1 || st.Archived != 0 {
		t.Errorf("stats %+v; want 1 throttled, none archived", st)
	}
}

// TestMalformedCostIsArchivedAtOnce: a task whose "cost" header is not a
// whole number of 1 or more (enqueued by code other than quotaq-enqueue) is
// archived at once, saying so: never run, retried or counted as throttled.
func TestMalformedCostIsArchivedAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{"acme": costPolicy}})
	bad := []string{"0", "-1", "1.5", "x", "", " 2"}
	for _, v := range bad {
		if _, err := b.client.Enqueue(costTask("acme", v), asynq.Queue(b.queue), asynq.MaxRetry(25)); err != nil {
			t.Fatal(err)
		}
	}
	q := b.waitQueueDone(t, 20*time.Second)
	if q.Archived != len(bad) || b.runs.count() != 0 {
		t.Fatalf("archived %d, ran %d; want %d archived, none run", q.Archived, b.runs.count(), len(bad))
	}
	archived, err := b.inspector.ListArchivedTasks(b.queue)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range archived {
		if a.Retried != 0 || !strings.Contains(a.LastErr, `"cost" header`) || !strings.Contains(a.LastErr, "whole number of 1 or more") {
			t.Errorf("task with cost %q: retried %d, error %q; want archived at once naming the cost header", a.Headers[worker.CostHeader], a.Retried, a.LastErr)
		}
	}
	if st := b.throttler.Stats(); st.Throttled != 0 || st.Archived != int64(len(bad)) {
		t.Errorf("stats %+v; want %d archived, none throttled", st, len(bad))
	}
	if n := b.counter(t, "quotaq_worker_archived_total", "reason", "invalid_cost"); n != float64(len(bad)) {
		t.Errorf("archived_total{reason=invalid_cost} = %v, want %d", n, len(bad))
	}
	if tokens, quota := peekCost(t, b.limiter, "acme"); tokens != 10 || quota != 100 {
		t.Errorf("%d tokens, %d quota units left; want all 10 and 100", tokens, quota)
	}
}

// TestShaperBooksTheCostHeader: a Shaper with the default options books
// what the "cost" header says, and refuses a cost above the burst or a
// malformed one without enqueueing it.
func TestShaperBooksTheCostHeader(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{"acme": costPolicy}, noStart: true})
	s := worker.NewShaper(b.limiter, b.client)
	ctx := context.Background()
	if _, err := s.Enqueue(ctx, costTask("acme", "5"), asynq.Queue(b.queue)); err != nil {
		t.Fatal(err)
	}
	if tokens, quota := peekCost(t, b.limiter, "acme"); tokens != 5 || quota != 95 {
		t.Errorf("after shaping a task of cost 5: %d tokens, %d quota units left; want 5 and 95", tokens, quota)
	}
	for cost, want := range map[string]string{"11": "can never run", "x": `"cost" header`} {
		if _, err := s.Enqueue(ctx, costTask("acme", cost), asynq.Queue(b.queue)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("cost %q: err %v, want one saying %q", cost, err, want)
		}
	}
	if q, err := b.inspector.GetQueueInfo(b.queue); err != nil || q.Size != 1 {
		t.Errorf("queue %+v %v; want only the task of cost 5", q, err)
	}
}
