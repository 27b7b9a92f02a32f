package throttle

import (
	"context"
	"time"
)

var forgetScript = changeScript("return 1")

// ForgetCache makes the next decision on id read its policy and aux hash
// again, as every change script does (see lua/tokenbucket.lua): tests
// compare decisions with and without what the state caches.
func ForgetCache(ctx context.Context, l *Limiter, id string) error {
	return forgetScript.Run(ctx, l.rdb, []string{l.keysFor(id).tb}).Err()
}

// WithLeaseClock gives the local state of a Limiter (its leases and known
// refusals: WithLeases or WithRefusalCache, given before) the clock now, so
// that tests can move it with miniredis's.
func WithLeaseClock(now func() time.Time) Option {
	return func(l *Limiter) {
		if l.local != nil {
			l.local.now = now
		}
	}
}
