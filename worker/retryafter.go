package worker

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryAfterError is returned by a handler whose upstream said "stop for a
// while" (HTTP 429 or 503 with Retry-After). Make it with RetryAfter.
type RetryAfterError struct {
	// Delay is how long the upstream asked to wait.
	Delay time.Duration
	// Err is the upstream's error, for logs.
	Err error
}

// RetryAfter returns an error for a handler to return when the API it calls
// answered 429 (or 503) with Retry-After d. The Throttler then puts the task
// back to run after d, which is not a failure (its retry count does not
// move), and holds the task's tenant for d, so that its other tasks wait too
// instead of calling an API that already said stop. Without the Throttler's
// middleware it is an ordinary error, retried by asynq.
//
// d <= 0 means "as soon as the limiter allows".
func RetryAfter(d time.Duration, err error) error {
	return &RetryAfterError{Delay: d, Err: err}
}

func (e *RetryAfterError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("worker: upstream asked to retry after %s", e.Delay)
	}
	return fmt.Sprintf("worker: upstream asked to retry after %s: %v", e.Delay, e.Err)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// asRetryAfter returns the RetryAfterError in err's chain, if any.
func asRetryAfter(err error) (*RetryAfterError, bool) {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return ra, true
	}
	return nil, false
}

// capRetryAfter returns ra with its delay cut to the Throttler's
// WithMaxRetryAfter, logging and counting a cut: an upstream's Retry-After of
// a year must not strand the task (and its tenant) for a year.
func (t *Throttler) capRetryAfter(j *job, ra *RetryAfterError) *RetryAfterError {
	d := t.capUpstreamDelay(j, ra.Delay, ra.Err)
	if d == ra.Delay {
		return ra
	}
	return &RetryAfterError{Delay: d, Err: ra.Err}
}

// capUpstreamDelay returns d, a delay an upstream asked for (Retry-After, or
// the reset of a spent budget), cut to WithMaxRetryAfter, logging and
// counting a cut.
func (t *Throttler) capUpstreamDelay(j *job, d time.Duration, cause error) time.Duration {
	most := t.maxRetryAfter
	if most <= 0 {
		most = DefaultMaxRetryAfter
	}
	if d <= most {
		return d
	}
	t.stats.retryAfterCapped.Add(1)
	if m := t.metrics; m != nil {
		m.retryAfterCapped.WithLabelValues(m.typ(j.task.Type())).Inc()
	}
	t.logger.Warn("worker: upstream asked to retry after more than the most allowed; delay cut (WithMaxRetryAfter, --max-retry-after)",
		"type", j.task.Type(), "tenant", j.tenant, "task_id", j.id, "asked", d, "delay", most, "err", cause)
	return most
}

// ParseRetryAfter reads an HTTP Retry-After value, either a number of
// seconds or an HTTP date (taken relative to now). It reports false when v is
// neither; a date in the past gives 0.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		const maxSecs = int64(1<<63-1) / int64(time.Second)
		return time.Duration(min(secs, maxSecs)) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}
