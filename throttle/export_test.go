package throttle

import "time"

// WithGeneralPath makes a Limiter decide every call with decide.lua, as it
// does for several ids, instead of lean.lua: tests compare the two.
func WithGeneralPath() Option { return func(l *Limiter) { l.general = true } }

// WithLeaseClock gives the leases of a Limiter (WithLeases, given before)
// the clock now, so that tests can move it with miniredis's.
func WithLeaseClock(now func() time.Time) Option {
	return func(l *Limiter) {
		if l.leases != nil {
			l.leases.now = now
		}
	}
}
