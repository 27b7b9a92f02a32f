package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// A policy that cannot be enforced (a default written into Redis by hand)
// keeps tasks from running and is counted as such, not as Redis being
// unavailable.
func TestInvalidPolicyIsNotCountedAsAnOutage(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{noStart: true})
	if err := b.rdb.HSet(context.Background(), b.limiter.Prefix()+":default-policy", "rate", "NaN", "t", 1, "b", 10, "q", 0, "qp", 0).Err(); err != nil {
		t.Fatal(err)
	}
	b.start(t)
	b.enqueue(t, "acme", 1, asynq.MaxRetry(0))
	waitFor(t, 10*time.Second, "the task to be put back", func() bool {
		return b.counter(t, "quotaq_worker_throttled_total", "reason", "invalid") >= 1
	})
	if n := b.counter(t, "quotaq_worker_throttled_total", "reason", "unavailable"); n != 0 {
		t.Errorf("throttled_total{reason=unavailable} = %v, want 0: an invalid policy is not an outage", n)
	}
	if n := b.runs.count(); n != 0 {
		t.Errorf("the task ran %d times under a policy that cannot be enforced", n)
	}
}
