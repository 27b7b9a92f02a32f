package throttle

import "time"

// WithRefusalCache lets a Limiter refuse locally, without asking Redis, what
// it knows Redis would refuse: an id refused n tokens with RetryAfter d is
// refused here any decision of n or more tokens that involves it, until d
// has passed or max has, whichever is first. Default 0: off. httplimit turns
// it on, for clients that hammer past their limit.
//
// It never admits locally, so it cannot over-admit. It trades freshness:
// another process's Reset, SetPolicy, CancelN or ResetQuota reaches a
// refused id here at most max later (this Limiter's own at once). Only
// Allow, AllowN and AllowMulti use it. A local refusal is Redis's Result,
// aged: RetryAfter, ResetAfter and QuotaResetAfter shortened by the time
// since. When a refusal ends, the id's decisions ask Redis one at a time
// for up to max longer (an id over its limit is likely refused again: its
// callers do not all ask at once each time a token comes free).
func WithRefusalCache(max time.Duration) Option {
	return func(l *Limiter) {
		if max <= 0 {
			if l.local != nil {
				l.local.refuse = 0
			}
			l.dropLocalIfOff()
			return
		}
		l.localState().refuse = max
	}
}

// refusal is a refusal Redis gave, known until it expires.
//
// It is kept until the RetryAfter Redis gave has passed, counted from when
// the request was sent (before Redis computed it), so without outside
// changes the tokens cannot be there before it expires. A refusal whose
// RetryAfter is unknown (-1: n above the burst) is not kept.
type refusal struct {
	n     int64     // the smallest cost known to be refused
	at    time.Time // when the refused request was sent
	until time.Time // refused until then
	r     Result    // Redis's answer
}

// covers reports whether the refusal refuses n tokens at now.
func (e *refusal) covers(n int64, now time.Time) bool {
	return now.Before(e.until) && n >= e.n
}

// aged returns the refusal's Result as of now.
func (e *refusal) aged(now time.Time) Result {
	r := e.r
	since := now.Sub(e.at)
	left := func(d time.Duration) time.Duration {
		if d <= since {
			return 0
		}
		return d - since
	}
	// round up to the microsecond, like Redis's answers
	r.RetryAfter = (e.until.Sub(now) + time.Microsecond - 1).Truncate(time.Microsecond)
	r.ResetAfter = left(r.ResetAfter)
	r.QuotaResetAfter = left(r.QuotaResetAfter)
	return r
}
