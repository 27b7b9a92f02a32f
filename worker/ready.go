package worker

import (
	"context"
	"time"

	"github.com/hibiken/asynq"
)

// ReadyHeader is the task header that says when a task was ready to run:
// when it was enqueued, or its ProcessIn/ProcessAt time (RFC 3339, UTC).
// StampReady sets it; quotaq-enqueue and NewHTTPCallTask do. The worker
// observes, for each task that has it, the time from then to the start of
// its first run (quotaq_worker_throttle_wait_seconds): the wait the
// throttle and the queue added. Tasks without it are not observed.
const ReadyHeader = "ready_at"

// StampReady sets headers[ReadyHeader] to now, or to the ProcessAt or
// ProcessIn time that opts (the options the task will be enqueued with)
// give, and returns headers (made when nil).
func StampReady(headers map[string]string, opts ...asynq.Option) map[string]string {
	if headers == nil {
		headers = map[string]string{}
	}
	ready := time.Now()
	for _, o := range opts {
		switch o.Type() {
		case asynq.ProcessAtOpt:
			if at, ok := o.Value().(time.Time); ok {
				ready = at
			}
		case asynq.ProcessInOpt:
			if d, ok := o.Value().(time.Duration); ok {
				ready = time.Now().Add(d)
			}
		}
	}
	headers[ReadyHeader] = ready.UTC().Format(time.RFC3339Nano)
	return headers
}

// observeWait records how long j's task waited between its ReadyHeader
// and now, the start of its run, if this is its first run (a retry's wait
// includes its failed runs and backoff, not the throttle's).
func (t *Throttler) observeWait(ctx context.Context, j *job) {
	m := t.metrics
	if m == nil {
		return
	}
	v, ok := j.task.Headers()[ReadyHeader]
	if !ok {
		return
	}
	if retried, _ := asynq.GetRetryCount(ctx); retried > 0 {
		return
	}
	ready, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return
	}
	m.wait.WithLabelValues(m.typ(j.task.Type())).Observe(max(time.Since(ready), 0).Seconds())
}
