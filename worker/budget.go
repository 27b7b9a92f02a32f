package worker

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// An upstream that tells its budget in its answers (the IETF draft's
// RateLimit field, or X-RateLimit-Remaining and X-RateLimit-Reset) says
// when it is spent before it refuses a call. A handler that reads it calls
// UpstreamSpent; the Throttler then holds the task's tenant until the
// budget is back, so the next call does not draw a 429.

// UpstreamSpent tells the Throttler running the task of ctx that its
// upstream's budget is spent for d (it said so in its answer, as read by
// ParseBudget): the tenant is held for d once the task returns. It is a
// no-op outside the Throttler's middleware and for d <= 0. The built-in
// http:call handler calls it.
func UpstreamSpent(ctx context.Context, d time.Duration) {
	if s, ok := ctx.Value(budgetKey{}).(*budgetSink); ok && d > 0 {
		s.mu.Lock()
		s.spent = max(s.spent, d)
		s.mu.Unlock()
	}
}

type budgetKey struct{}

// budgetSink collects what a task's handler said of its upstream's budget.
type budgetSink struct {
	mu    sync.Mutex
	spent time.Duration
}

func (s *budgetSink) take() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spent
}

// ParseBudget reads the budget an upstream's answer states: the requests
// left and when the budget is back. It reads the IETF draft's RateLimit
// field, in its structured form ("default";r=0;t=3, the item with the
// fewest left) or its older one (limit=10, remaining=0, reset=3), else
// X-RateLimit-Remaining with X-RateLimit-Reset, which may be seconds from
// now or a Unix time (as GitHub sends). ok is false when none says both.
func ParseBudget(h http.Header, now time.Time) (remaining int64, reset time.Duration, ok bool) {
	if v := h.Get("RateLimit"); v != "" {
		if r, t, found := parseRateLimitField(v); found {
			return r, t, true
		}
	}
	rs, ts := h.Get("X-RateLimit-Remaining"), h.Get("X-RateLimit-Reset")
	r, err1 := strconv.ParseInt(strings.TrimSpace(rs), 10, 64)
	t, err2 := strconv.ParseInt(strings.TrimSpace(ts), 10, 64)
	if err1 != nil || err2 != nil || r < 0 || t < 0 {
		return 0, 0, false
	}
	if t > 1_000_000_000 { // a Unix time
		return r, max(time.Unix(t, 0).Sub(now), 0), true
	}
	return r, secondsDuration(t), true
}

// parseRateLimitField reads a RateLimit field: the structured form's items
// (the one with the fewest left), or the older form's remaining and reset.
func parseRateLimitField(v string) (remaining int64, reset time.Duration, ok bool) {
	remaining = -1
	var older struct{ r, t int64 }
	older.r, older.t = -1, -1
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if k, val, isPair := strings.Cut(item, "="); isPair && !strings.Contains(k, ";") {
			n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
			switch strings.TrimSpace(strings.ToLower(k)) {
			case "remaining":
				if err == nil {
					older.r = n
				}
			case "reset":
				if err == nil {
					older.t = n
				}
			}
			continue
		}
		r, t := int64(-1), int64(-1)
		for _, param := range strings.Split(item, ";")[1:] {
			k, val, _ := strings.Cut(strings.TrimSpace(param), "=")
			n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "r":
				r = n
			case "t":
				t = n
			}
		}
		if r >= 0 && t >= 0 && (remaining < 0 || r < remaining) {
			remaining, reset = r, secondsDuration(t)
		}
	}
	if remaining >= 0 {
		return remaining, reset, true
	}
	if older.r >= 0 && older.t >= 0 {
		return older.r, secondsDuration(older.t), true
	}
	return 0, 0, false
}

// secondsDuration is s seconds, capped where a Duration ends.
func secondsDuration(s int64) time.Duration {
	const maxSecs = int64(1<<63-1) / int64(time.Second)
	return time.Duration(min(max(s, 0), maxSecs)) * time.Second
}
