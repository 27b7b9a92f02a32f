package throttle

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultBreaker is how long a Limiter without WithBreaker answers at once
// after Redis could not be reached.
const DefaultBreaker = time.Second

// errBreakerOpen is the cause of ErrUnavailable while the breaker is open.
var errBreakerOpen = errors.New("Redis could not be reached moments ago; not asked again until the breaker's window has passed")

// WithBreaker sets how long, after Redis could not be reached, decisions
// are answered at once as unavailable (failing open or closed, see
// WithFailOpen) instead of each waiting for Redis's dial timeouts and
// retries; then one decision asks Redis again, and the others keep being
// answered at once until it has. 0 turns it off. Default DefaultBreaker.
func WithBreaker(d time.Duration) Option {
	return func(l *Limiter) { l.breaker = d }
}

// breakerOpen reports whether a decision is to be answered without asking
// Redis. When the window has passed, one caller is let through to ask.
func (l *Limiter) breakerOpen() bool {
	if l.breaker <= 0 {
		return false
	}
	until := l.openUntil.Load()
	if until == 0 {
		return false
	}
	now := time.Now().UnixNano()
	if now < until {
		return true
	}
	return !l.openUntil.CompareAndSwap(until, now+int64(l.breaker))
}

// trip opens the breaker when err says Redis could not be reached (not a
// reply Redis gave, nor the caller's own deadline).
func (l *Limiter) trip(err error) {
	var reply redis.Error
	if l.breaker <= 0 || errors.As(err, &reply) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errBreakerOpen) {
		return
	}
	l.openUntil.Store(time.Now().Add(l.breaker).UnixNano())
}

// reached closes the breaker: Redis answered.
func (l *Limiter) reached() {
	if l.openUntil.Load() != 0 {
		l.openUntil.Store(0)
	}
}
