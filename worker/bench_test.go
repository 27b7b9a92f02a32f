package worker_test

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
)

// BenchmarkThrottledBacklog measures a throttled backlog: 400 tasks of one
// tenant limited to 50/s, half of them MaxRetry(0), on a real redis-server
// and asynq server. It reports tasks lost (archived), dequeues per processed
// task (1 is ideal; a throttled task cannot do better than 2) and how much of
// burst + rate × elapsed the tenant got. Run it with -benchtime=1x: one
// iteration takes about 8 s.
//
//	go test -run '^$' -bench ThrottledBacklog -benchtime 1x ./worker
func BenchmarkThrottledBacklog(b *testing.B) {
	for range b.N {
		b.StopTimer()
		tb := setup(b, bundleConfig{
			policies: map[string]throttle.Policy{"acme": {Rate: 50, Burst: 10}},
			asynqCfg: asynq.Config{Concurrency: 10},
			noStart:  true,
		})
		tb.enqueue(b, "acme", 200, asynq.MaxRetry(0))
		tb.enqueue(b, "acme", 200, asynq.MaxRetry(3))
		b.StartTimer()
		start := time.Now()
		tb.start(b)
		q := tb.waitQueueDone(b, time.Minute)
		elapsed := time.Since(start)
		b.StopTimer()
		st := tb.throttler.Stats()
		dequeues := st.Allowed + st.Throttled - st.RetryAfter
		b.ReportMetric(float64(q.Archived), "lost")
		b.ReportMetric(float64(dequeues)/float64(q.Processed-q.Failed), "dequeues/processed")
		b.ReportMetric(float64(st.Rethrottled), "rethrottled")
		b.ReportMetric(100*float64(q.Processed-q.Failed)/(10+50*elapsed.Seconds()), "%of-limit")
		b.ReportMetric(elapsed.Seconds(), "s/run")
	}
}
