package worker_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

func TestParseBudget(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		h         map[string]string
		remaining int64
		reset     time.Duration
		ok        bool
	}{
		{"Structured", map[string]string{"RateLimit": `"default";r=0;t=3`}, 0, 3 * time.Second, true},
		{"StructuredFewestLeft", map[string]string{"RateLimit": `"default";r=7;t=9, "quota";r=2;t=3600`}, 2, time.Hour, true},
		{"Older", map[string]string{"RateLimit": `limit=10, remaining=0, reset=4`}, 0, 4 * time.Second, true},
		{"XRateLimitSeconds", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "12"}, 0, 12 * time.Second, true},
		{"XRateLimitUnixTime", map[string]string{"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "1796040030"}, 3, 30 * time.Second, true},
		{"XRateLimitPast", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1796039000"}, 0, 0, true},
		{"RemainingAlone", map[string]string{"X-RateLimit-Remaining": "0"}, 0, 0, false},
		{"Garbage", map[string]string{"RateLimit": `;;;=,`, "X-RateLimit-Remaining": "x", "X-RateLimit-Reset": "-1"}, 0, 0, false},
		{"Negative", map[string]string{"X-RateLimit-Remaining": "-1", "X-RateLimit-Reset": "5"}, 0, 0, false},
		{"Huge", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "999999999"}, 0, 999999999 * time.Second, true},
		{"None", nil, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for k, v := range tt.h {
				h.Set(k, v)
			}
			r, d, ok := worker.ParseBudget(h, now)
			if r != tt.remaining || d != tt.reset || ok != tt.ok {
				t.Fatalf("ParseBudget(%v) = %d, %s, %v; want %d, %s, %v", tt.h, r, d, ok, tt.remaining, tt.reset, tt.ok)
			}
		})
	}
}

// A handler whose upstream says its budget is spent (UpstreamSpent) holds
// its tenant for that long: the tenant's next task waits, though the upstream
// refused nothing.
func TestUpstreamSpentHoldsTheTenant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, bundleConfig{
		policies: map[string]throttle.Policy{"spender": {Rate: 100, Burst: 10}},
		asynqCfg: asynq.Config{Concurrency: 1}, // one task at a time: the first holds the rest
		handler: func(ctx context.Context, task *asynq.Task) error {
			worker.UpstreamSpent(ctx, time.Hour)
			return nil
		},
	})
	b.enqueue(t, "spender", 3)
	waitFor(t, 10*time.Second, "one task to run and the others to wait", func() bool {
		q, err := b.inspector.GetQueueInfo(b.queue)
		return err == nil && b.runs.count() >= 1 && q.Pending == 0 && q.Active == 0
	})
	if n := b.runs.count(); n != 1 {
		t.Fatalf("%d tasks ran, want 1: the first said the budget is spent for an hour", n)
	}
	r, err := b.limiter.Peek(ctx, "spender")
	if err != nil || r.Allowed || r.Reason != throttle.ReasonPaused || r.RetryAfter < 59*time.Minute {
		t.Fatalf("tenant after a spent budget: %+v %v; want held for about an hour", r, err)
	}
	if st := b.throttler.Stats(); st.RetryAfter != 0 || st.Archived != 0 {
		t.Fatalf("stats %+v: a spent budget is neither a 429 nor a failure", st)
	}
}
