package throttle

import "time"

// WithLeases lets a Limiter admit a tenant far under its limits without
// asking Redis for most decisions: when Redis admits one, it may lease this
// Limiter a few more of the tenant's tokens (at most most; most <= 0: 64),
// spent here until they run out or ttl has passed. Default ttl 0: off.
//
// It never admits past the policy, however many processes lease. It trades
// freshness for round trips: another process's Hold, SetPolicy or Reset is
// seen here at most ttl later (this Limiter's own at once). Only AllowN and
// Reserve of one tenant with TokenBucket lease, for a tenant with no quota,
// pause or bookings, and without KeepTicket. A Result admitted from a lease
// has Remaining = the tokens left in it and ResetAfter 0.
func WithLeases(ttl time.Duration, most int64) Option {
	return func(l *Limiter) {
		if ttl <= 0 {
			if l.local != nil {
				l.local.ttl = 0
			}
			l.dropLocalIfOff()
			return
		}
		if most <= 0 {
			most = defaultLeaseMost
		}
		c := l.localState()
		c.ttl, c.most = ttl, most
	}
}

const defaultLeaseMost = 64

// lease is the tokens of one tenant a Limiter may spend on its own.
//
// A lease's tokens leave the bucket when Redis grants it, and until the
// lease ends there the bucket does not refill over them (tokens in the
// bucket plus tokens leased out stay within the burst), so however late in
// the lease they are spent, the admissions are those of one token bucket.
// Redis grants a lease only while the bucket keeps at least half its burst
// (a tenant near its limit gets none, and what leases waste cannot bring it
// there) and of at most what the bucket refills in ttl (a tenant whose
// bucket refills slowly gets none). The next decision this Limiter sends
// Redis for the tenant settles the lease: its unspent tokens go back to the
// bucket, if the lease has not ended there; the tokens of a lease that ran
// out of time are lost, as if the tenant had been idle for ttl. A lease
// lasts ttl on this process's clock and at least ttl on Redis's, which must
// advance at the same pace (on a Redis whose clock is held still, as a
// test's miniredis can be, an unspent lease's tokens never come back).
//
// The size of the next lease follows what the last one used: at first 1
// token, then twice what was spent, at least one more than the decisions
// that waited for the last renewal, at most most, so that little is held
// back from other processes. A tenant that comes back a ttl or more after
// its last decision here, and did not use its last lease, is leased nothing
// (it would end unspent).
//
// A Reserve with a Ticket admitted from a lease does not look for a booking
// under that ticket: bookings are made when a tenant is at its limit, when
// no lease is granted, so this is rare, and the tokens are then paid twice,
// never too few.
type lease struct {
	k      int64 // tokens granted
	at     int64 // when Redis granted them, Unix µs on its clock
	left   int64
	until  time.Time
	spent  int64     // spent from the current lease
	last   int64     // spent from the leases before it, halved at each lease
	demand int64     // decisions that waited for the last renewal
	seen   time.Time // the last decision on the tenant here
}

// take spends n tokens of the lease, if it has them and has not ended.
func (e *lease) take(id string, n int64, now time.Time) (Result, bool) {
	if e.left < n || !now.Before(e.until) {
		return Result{}, false
	}
	e.left -= n
	e.spent += n
	e.seen = now
	return Result{Allowed: true, Remaining: e.left, QuotaRemaining: -1, Tenant: id}, true
}

// settle ends the lease here for a decision sent to Redis at now, and
// returns what the decision tells Redis: how many tokens to lease besides
// it (want: twice what the last lease used, at least 1, at most c.most;
// none when the last decision here was a ttl or more ago and the last lease
// was not used), and the lease it settles: its tokens, those not spent and
// when Redis granted it, or zeros once it has ended.
func (e *lease) settle(c *local, now time.Time) (want, k, unspent, at int64) {
	if e.k > 0 && now.Before(e.until) {
		k, unspent, at = e.k, e.left, e.at
	}
	e.k, e.left = 0, 0
	if e.seen.IsZero() || now.Sub(e.seen) < c.ttl || e.spent > 0 {
		want = min(c.most, max(1, 2*max(e.spent, e.last), e.demand+1))
	}
	e.demand, e.seen = 0, now
	return want, k, unspent, at
}

// grant records a lease of k tokens, granted by Redis at at (Unix µs, its
// clock), that ends here at until.
func (e *lease) grant(k, at int64, until time.Time) {
	e.last, e.spent = max(e.spent, e.last/2), 0
	e.k, e.at, e.left, e.until = k, at, k, until
}
