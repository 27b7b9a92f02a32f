package throttle

import (
	"strings"
	"time"
)

// Option configures a Limiter.
type Option func(*Limiter)

// WithPrefix sets the prefix of every key the Limiter writes. Default
// "quotaq". Braces are removed: they would change the keys' hash slot.
func WithPrefix(prefix string) Option {
	return func(l *Limiter) { l.prefix = strings.NewReplacer("{", "", "}", "").Replace(prefix) }
}

// WithDefaultPolicy sets the policy of tenants that have none stored, until
// a default is stored with SetDefaultPolicy. Default PerSecond(10). An
// invalid policy is reported by Limiter.Err, and every decision refuses
// with ErrInvalidPolicy, even with WithFailOpen(true).
func WithDefaultPolicy(p Policy) Option {
	return func(l *Limiter) { l.fallback = p }
}

// WithFailOpen sets what a decision says when Redis cannot be reached: admit
// (true) or refuse (false). The error (ErrUnavailable) is returned either
// way. An invalid policy is not an outage: it always refuses. Default
// false: fail closed.
func WithFailOpen(open bool) Option {
	return func(l *Limiter) { l.failOpen = open }
}

// WithAlgorithm sets the algorithm. Default TokenBucket.
func WithAlgorithm(a Algorithm) Option {
	return func(l *Limiter) { l.algo = a.script() }
}

// WithPolicyRefresh sets how long a Limiter keeps the stored default policy
// before it reads it again. Tenants' own policies are read on every decision
// and need no refresh. Default 1s.
func WithPolicyRefresh(d time.Duration) Option {
	return func(l *Limiter) { l.refresh = d }
}

// WithQuotaRetry sets the RetryAfter of a decision refused by a quota whose
// reset time is unknown (QuotaPeriod 0 and no reset recorded with
// SetQuotaReset or SetDefaultQuotaReset). Default 1m.
func WithQuotaRetry(d time.Duration) Option {
	return func(l *Limiter) { l.quotaRetry = d }
}
