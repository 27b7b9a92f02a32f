package worker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/worker"
)

// An upstream's Retry-After of a year (or an HTTP date decades ahead) puts
// the task back and holds its tenant for at most WithMaxRetryAfter (one hour
// by default), logged and counted, instead of stranding the task.
func TestRetryAfterIsCapped(t *testing.T) {
	t.Parallel()
	const year = 365 * 24 * time.Hour
	tests := []struct {
		name  string
		opts  []worker.Option
		asked time.Duration
		most  time.Duration
	}{
		{"DefaultCapIsAnHour", nil, year, worker.DefaultMaxRetryAfter},
		{"ConfiguredCap", []worker.Option{worker.WithMaxRetryAfter(10 * time.Minute)}, 70 * year, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int64
			b := setup(t, bundleConfig{
				opts: tt.opts,
				handler: func(context.Context, *asynq.Task) error {
					calls.Add(1)
					return worker.RetryAfter(tt.asked, errors.New("upstream: 429 Too Many Requests"))
				},
			})
			b.enqueue(t, "acme", 1)
			waitFor(t, 10*time.Second, "the upstream 429", func() bool { return b.throttler.Stats().RetryAfter == 1 })
			due := b.dueOfTheOneScheduled(t)
			// the pause is the cap; the booking after it may come later at
			// the rate the limiter learned from the 429, never near the
			// asked delay
			if latest := time.Now().Add(2 * tt.most); due.After(latest) {
				t.Errorf("the task is due at %s, after %s: Retry-After %s was not cut to %s", due, latest, tt.asked, tt.most)
			}
			if s := b.throttler.Stats(); s.RetryAfterCapped != 1 {
				t.Errorf("Stats().RetryAfterCapped = %d, want 1", s.RetryAfterCapped)
			}
			if n := b.counter(t, "quotaq_worker_upstream_retry_after_capped_total", "type", "job"); n != 1 {
				t.Errorf("upstream_retry_after_capped_total = %v, want 1", n)
			}
			if !strings.Contains(b.logs.String(), "delay cut") {
				t.Errorf("no log line says the delay was cut:\n%s", b.logs.String())
			}
		})
	}
}

// A Retry-After within the cap is kept as the upstream gave it.
func TestRetryAfterWithinTheCapIsKept(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{
		opts: []worker.Option{worker.WithMaxRetryAfter(time.Hour)},
		handler: func(context.Context, *asynq.Task) error {
			return worker.RetryAfter(30*time.Minute, errors.New("upstream: 429 Too Many Requests"))
		},
	})
	b.enqueue(t, "acme", 1)
	due := b.dueOfTheOneScheduled(t)
	if earliest := time.Now().Add(29 * time.Minute); due.Before(earliest) {
		t.Errorf("the task is due at %s, before %s: a 30m Retry-After was cut", due, earliest)
	}
	if s := b.throttler.Stats(); s.RetryAfterCapped != 0 {
		t.Errorf("Stats().RetryAfterCapped = %d, want 0", s.RetryAfterCapped)
	}
}

// dueOfTheOneScheduled waits until b's queue has one scheduled task (put
// back) and returns when it is due.
func (b *testBundle) dueOfTheOneScheduled(t *testing.T) time.Time {
	t.Helper()
	var due time.Time
	waitFor(t, 10*time.Second, "the task to be put back", func() bool {
		tasks, err := b.inspector.ListScheduledTasks(b.queue)
		if err != nil || len(tasks) != 1 {
			return false
		}
		due = tasks[0].NextProcessAt
		return true
	})
	return due
}

// A spent budget whose reset is a year away (X-RateLimit-Reset) holds the
// tenant for at most WithMaxRetryAfter too.
func TestSpentBudgetHoldIsCapped(t *testing.T) {
	t.Parallel()
	const most = 10 * time.Minute
	var once sync.Once
	b := setup(t, bundleConfig{
		opts: []worker.Option{worker.WithMaxRetryAfter(most)},
		handler: func(ctx context.Context, _ *asynq.Task) error {
			once.Do(func() { worker.UpstreamSpent(ctx, 365*24*time.Hour) })
			return nil
		},
	})
	b.enqueue(t, "acme", 1)
	waitFor(t, 10*time.Second, "the cut to be counted", func() bool { return b.throttler.Stats().RetryAfterCapped == 1 })
	res, err := b.limiter.ReserveN(context.Background(), "acme", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Delay > most+time.Minute {
		t.Errorf("the tenant's next token is due in %s, after the cap of %s: the year-long budget reset was not cut", res.Delay, most)
	}
}
