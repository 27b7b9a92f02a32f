package throttle

import (
	"sync"
	"time"
)

// WithLeases lets a Limiter admit tenants far under their limits without a
// round trip for most decisions. When Redis admits a decision, it can also
// lease this Limiter some more of the tenant's tokens, which the next
// decisions for that tenant here spend locally until they run out or ttl has
// passed. Default 0: off, every decision asks Redis.
//
// A lease never lets a tenant past its policy, whatever the number of
// processes: its tokens leave the bucket when it is granted, and until the
// lease ends the bucket does not refill over them (tokens in the bucket plus
// tokens leased out stay within the burst), so however late in the lease
// they are spent, the admissions are those of one token bucket. A lease is
// granted only while the bucket keeps at least half its burst, so a tenant
// near its limit gets none and what leases waste cannot bring it there, and
// holds at most what the bucket refills in ttl, so a tenant whose bucket
// refills slowly gets none either. When this Limiter asks Redis again
// before its lease has ended, the tokens it did not spend go back to the
// bucket; the tokens of a lease that ran out of time are lost, as if the
// tenant had been idle for ttl. The size of the next lease follows what the
// last one used: at first 1 token, then twice what was spent, at most most
// (most <= 0 means 64), so that little is held back from other processes.
// A tenant that comes back here a ttl or more after its last decision, and
// did not use its last lease, is leased nothing (it would end unspent).
// While one decision asks Redis for a tenant, others here that find its
// lease spent wait for that answer and spend from the lease it brings,
// sized for them too, instead of each asking Redis (unless the last answer
// brought no lease: the tenant is near its limit).
//
// Only the common decision leases: AllowN or Reserve of one tenant with
// TokenBucket, without KeepTicket, for a tenant whose policy has no quota
// and that is neither held nor has tokens booked. What changes a tenant
// outside this Limiter (another process's Hold, SetPolicy, Reset, ...) is
// seen here when the lease ends, at most ttl later; the same calls on this
// Limiter end its lease at once. A decision admitted from a lease has
// Remaining = the tokens left in the lease, and ResetAfter 0. A Reserve with
// a Ticket admitted from a lease does not look for a booking under that
// ticket: bookings are made when a tenant is at its limit, when no lease is
// granted, so this is rare, and the tokens are then paid twice, never too
// few.
//
// A lease lasts ttl on this process's clock and at least ttl on Redis's,
// which must advance at the same pace, as real clocks do (on a Redis whose
// clock is held still, as a test's miniredis can be, an unspent lease's
// tokens never come back).
//
// At most 100,000 tenants hold a lease at once.
func WithLeases(ttl time.Duration, most int64) Option {
	return func(l *Limiter) {
		if ttl <= 0 {
			l.leases = nil
			return
		}
		if most <= 0 {
			most = defaultLeaseMost
		}
		l.leases = &leaseCache{ttl: ttl, most: most, now: time.Now, m: map[string]*lease{}}
	}
}

const (
	defaultLeaseMost = 64
	maxLeases        = 100_000
)

// leaseCache holds a Limiter's leases.
type leaseCache struct {
	ttl  time.Duration
	most int64
	now  func() time.Time

	mu sync.Mutex
	m  map[string]*lease
}

// lease is the tokens of one tenant this Limiter may spend on its own.
type lease struct {
	k     int64 // tokens granted
	at    int64 // when Redis granted them, Unix µs on its clock
	left  int64
	until time.Time
	spent int64 // spent from the current lease
	last  int64 // spent from the leases before it, halved at each lease
	// renew is closed when the decision that is asking Redis for this
	// tenant (and a new lease) has its answer; nil when none is
	renew   chan struct{}
	waiting int64     // decisions waiting for renew
	demand  int64     // decisions that waited for the last renewal
	barren  bool      // the last renewal brought no lease: decisions do not wait
	seen    time.Time // the last decision on the tenant here
}

// take spends n tokens of id's lease, if it has them and has not ended.
func (c *leaseCache) take(id string, n int64) (Result, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[id]
	if e == nil || e.left < n || !now.Before(e.until) {
		return Result{}, false
	}
	e.left -= n
	e.spent += n
	e.seen = now
	return Result{Allowed: true, Remaining: e.left, QuotaRemaining: -1, Tenant: id}, true
}

// renewing returns a channel closed when the decision on id that is asking
// Redis for a new lease has its answer, or nil when none is. Decisions that
// find the lease spent while it is renewed wait for it (as long as their own
// round trip would take) and spend from the new lease, instead of all asking
// Redis: callers that arrive together for a tenant, as a worker's do, would
// otherwise each renew it. The next renewal asks for at least as many
// tokens as decisions waited for this one. When the last renewal brought no
// lease (the tenant is near its limit), decisions do not wait.
func (c *leaseCache) renewing(id string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[id]; e != nil && e.renew != nil && !e.barren {
		e.waiting++
		return e.renew
	}
	return nil
}

// ask returns, for a decision on id that goes to Redis, how many tokens to
// ask for besides it (twice what the last lease used, at least 1, at most
// most; none when the last decision on id here was a ttl or more ago and
// the last lease was not used, as a lease would then most likely end
// unspent), and the lease it settles: its tokens, those not spent and when
// Redis granted it, or zeros. The lease ends here: its unspent tokens go
// back to Redis with the decision, if the lease has not ended there. With
// lead, the decision is the renewal others may wait for (one that wants no
// lease is not), and the caller must call asked(id, renew) when it has
// Redis's answer.
func (c *leaseCache) ask(id string, lead bool) (want, k, unspent, at int64, renew chan struct{}) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[id]
	if e == nil {
		if len(c.m) >= maxLeases {
			c.sweep()
			if len(c.m) >= maxLeases {
				return 1, 0, 0, 0, nil // the lease, if any, is not kept
			}
		}
		e = &lease{}
		c.m[id] = e
	}
	if lead && e.renew == nil && !e.barren {
		e.renew = make(chan struct{})
		renew = e.renew
	}
	if e.k > 0 && now.Before(e.until) {
		k, unspent, at = e.k, e.left, e.at
	}
	e.k, e.left = 0, 0
	if e.seen.IsZero() || now.Sub(e.seen) < c.ttl || e.spent > 0 {
		want = min(c.most, max(1, 2*max(e.spent, e.last), e.demand+1))
	}
	e.demand, e.seen = 0, now
	return want, k, unspent, at, renew
}

// asked ends the renewal that ask started (renew nil: none).
func (c *leaseCache) asked(id string, renew chan struct{}) {
	if renew == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[id]; e != nil && e.renew == renew {
		e.renew, e.demand, e.waiting = nil, e.waiting, 0
		e.barren = e.k == 0
	}
	close(renew)
}

// grant records a lease of k tokens for id, granted by Redis at at (Unix
// µs, its clock) for a request sent at sent (this process's clock).
func (c *leaseCache) grant(id string, k, at int64, sent time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[id]
	if e == nil {
		return // forgotten meanwhile, or too many: the tokens come back when the lease ends in Redis
	}
	e.last, e.spent, e.barren = max(e.spent, e.last/2), 0, false
	e.k, e.at, e.left, e.until = k, at, k, sent.Add(c.ttl)
}

// sweep removes ended leases; c.mu is held.
func (c *leaseCache) sweep() {
	now := c.now()
	for id, e := range c.m {
		if !now.Before(e.until) && e.renew == nil {
			delete(c.m, id)
		}
	}
}

// forget ends the leases of ids (all with none given).
func (c *leaseCache) forget(ids ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(ids) == 0 {
		clear(c.m)
		return
	}
	for _, id := range ids {
		delete(c.m, id)
	}
}
