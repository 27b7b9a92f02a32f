package throttle

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// local is what a Limiter knows of its tenants without asking Redis: for
// each tenant (or upstream id), in one entry, the lease of tokens it may
// spend here (WithLeases, see lease.go) and the refusal it knows
// (WithRefusalCache, see refusal.go).
//
// A decision that local cannot answer asks Redis (ask). When it is the only
// one asking for its tenant and its answer may serve others (a lease, or a
// refusal), it leads the tenant's flight: decisions on that tenant that
// arrive meanwhile wait for its answer (as long as their own round trip
// would take) and then spend from the lease it brought or share its
// refusal, instead of each asking Redis. Callers that arrive together for a
// tenant, as a worker's goroutines do, or a client hammering past its limit
// when its refusal expires, cost Redis one decision. When the last flight
// brought nothing (the tenant is near its limit and leased nothing, or was
// admitted without a lease), decisions do not wait: nothing would come of
// it.
//
// What a decision learns is kept only if nothing of its ids was forgotten
// (forget) since it was sent: an answer sent before a Reset or Hold may
// predate it. (Forgetting is counted per shard: an id that shares the
// shard can make an answer be dropped, which costs a round trip, never a
// wrong admission.)
type local struct {
	ttl    time.Duration // how long a lease lasts; 0: no leases
	most   int64         // the most tokens a lease holds
	refuse time.Duration // how long a refusal is kept at most; 0: none
	now    func() time.Time

	hashKey maphash.Seed
	shards  [localShards]localShard

	// decisions ask was given: answered by a lease, by a known refusal,
	// or sent to Redis (LocalStats)
	leaseHits, refusalHits, asked atomic.Int64
}

// maxLocal bounds the tenants a Limiter keeps local state for; past that,
// nothing new is kept until some of it has expired.
const maxLocal = 100_000

// localShards spreads local's lock over this many maps.
const localShards = 32

type localShard struct {
	mu  sync.Mutex
	m   map[string]*tenantState
	gen atomic.Uint64 // bumped by forget: answers asked before are stale
}

// tenantState is what a Limiter knows locally of one tenant.
type tenantState struct {
	lease
	no     refusal // the known refusal; none when its until has passed
	flight *flight // the decision asking Redis for the tenant; nil: none
	barren bool    // the last flight brought neither lease nor refusal, and none is recent: do not wait for the next
}

// flight is a decision asking Redis for one tenant on behalf of the
// decisions that wait for it.
type flight struct {
	done    chan struct{}
	lease   bool  // it may bring a lease
	cost    int64 // it may bring a refusal of this many tokens; 0: none
	waiting int64 // decisions waiting for it; under the shard's lock
}

// localState returns l's local state, made on first use by an option.
func (l *Limiter) localState() *local {
	if l.local == nil {
		l.local = &local{now: time.Now, hashKey: maphash.MakeSeed()}
		for i := range l.local.shards {
			l.local.shards[i].m = make(map[string]*tenantState)
		}
	}
	return l.local
}

// dropLocalIfOff forgets l's local state when no option uses it.
func (l *Limiter) dropLocalIfOff() {
	if l.local != nil && l.local.ttl == 0 && l.local.refuse == 0 {
		l.local = nil
	}
}

// leases reports whether c leases tokens; c may be nil.
func (c *local) leases() bool { return c != nil && c.ttl > 0 }

// refusals reports whether c keeps refusals; c may be nil.
func (c *local) refusals() bool { return c != nil && c.refuse > 0 }

func (c *local) shard(id string) *localShard {
	return &c.shards[maphash.String(c.hashKey, id)%localShards]
}

// entry returns id's state, made if missing and there is room; s.mu is
// held. nil: no room.
func (c *local) entry(s *localShard, id string, now time.Time) *tenantState {
	if e := s.m[id]; e != nil {
		return e
	}
	if len(s.m) >= maxLocal/localShards {
		c.sweep(s, now)
		if len(s.m) >= maxLocal/localShards {
			return nil
		}
	}
	e := &tenantState{}
	s.m[id] = e
	return e
}

// sweep drops the states that hold nothing alive; s.mu is held.
func (c *local) sweep(s *localShard, now time.Time) {
	for id, e := range s.m {
		if e.flight == nil && !now.Before(e.until) && !now.Before(e.no.until) {
			delete(s.m, id)
		}
	}
}

// ask answers a decision of n tokens over ids in mode here, if it can
// (answered): with a known refusal (modeAllow, with refusals), or with
// tokens spent from a lease (one id, with leases, keep false: a decision
// that keeps its ticket must reach Redis). While a flight that may answer
// it is asking Redis, it waits for it first. Otherwise the decision goes to
// Redis: ask returns its asking, and the caller must call a.done when it
// has the answer. A decision alone to ask for its tenant, whose answer may
// serve others, leads the tenant's flight.
func (c *local) ask(ctx context.Context, ids []string, n int64, mode mode, keep bool) (r Result, answered bool, a *asking) {
	refusals, leases := mode == modeAllow && c.refuse > 0, c.ttl > 0 && !keep
	if len(ids) > 1 { // known refusals only: no wait, no lease
		a = &asking{c: c, ids: ids, n: n, mode: mode, keep: keep, sent: c.now()}
		for _, id := range ids {
			a.gen += c.shard(id).gen.Load()
		}
		for _, id := range ids {
			if r, ok := c.refused(id, n, a.sent); refusals && ok {
				c.refusalHits.Add(1)
				return r, true, nil
			}
		}
		c.asked.Add(1)
		return Result{}, false, a
	}
	id := ids[0]
	s := c.shard(id)
	for {
		now := c.now()
		s.mu.Lock()
		e := c.entry(s, id, now)
		if e != nil && refusals && e.no.covers(n, now) {
			r := e.no.aged(now)
			s.mu.Unlock()
			c.refusalHits.Add(1)
			return r, true, nil
		}
		if e != nil && leases {
			if r, ok := e.take(id, n, now); ok {
				s.mu.Unlock()
				c.leaseHits.Add(1)
				return r, true, nil
			}
		}
		var f *flight
		if e != nil {
			f = e.flight
		}
		if f == nil || !(leases && f.lease || refusals && f.cost > 0 && f.cost <= n) || ctx.Err() != nil {
			// ask Redis, leading the tenant's flight when none is in the
			// air and one may bring something (e nil: no room, keep nothing)
			a = &asking{c: c, ids: ids, n: n, mode: mode, keep: keep, sent: now, gen: s.gen.Load()}
			if e != nil && f == nil && !e.barren && (leases || refusals) {
				a.f = &flight{done: make(chan struct{}), lease: leases}
				if refusals {
					a.f.cost = n
				}
				e.flight = a.f
			}
			s.mu.Unlock()
			c.asked.Add(1)
			return Result{}, false, a
		}
		f.waiting++
		s.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
		}
	}
}

// refused returns id's known refusal of n tokens at now, if any.
func (c *local) refused(id string, n int64, now time.Time) (Result, bool) {
	s := c.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[id]; e != nil && e.no.covers(n, now) {
		return e.no.aged(now), true
	}
	return Result{}, false
}

// asking is a decision on its way to Redis, which ask could not answer:
// what it tells Redis of this Limiter's lease (lease), and what it learns
// from the answer (granted, answered).
type asking struct {
	c    *local
	ids  []string
	n    int64
	mode mode
	keep bool
	sent time.Time
	gen  uint64  // the sum of its ids' shards' gens when it was sent
	f    *flight // the flight it leads; nil: none
}

// current returns the state of a's single id, unless it was forgotten
// since a was sent; s.mu is held.
func (a *asking) current(s *localShard) *tenantState {
	gen := uint64(0)
	for _, id := range a.ids {
		gen += a.c.shard(id).gen.Load()
	}
	if gen != a.gen {
		return nil
	}
	return s.m[a.ids[0]]
}

// lease returns what to tell Redis of a's tenant's lease (see
// tenantState.settle) and ends it here.
func (a *asking) lease() (want, settle, unspent, at int64) {
	s := a.c.shard(a.ids[0])
	s.mu.Lock()
	defer s.mu.Unlock()
	e := a.c.entry(s, a.ids[0], a.sent)
	if e == nil {
		return 0, 0, 0, 0 // no room to keep a lease
	}
	want, settle, unspent, at = e.settle(a.c, a.sent)
	if a.keep {
		want = 0
	}
	return want, settle, unspent, at
}

// granted records the lease of k tokens Redis granted a's tenant at at
// (Unix µs, its clock).
func (a *asking) granted(k, at int64) {
	s := a.c.shard(a.ids[0])
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := a.current(s); e != nil {
		e.grant(k, at, a.sent.Add(a.c.ttl))
		e.barren = false
	}
}

// answered records r, Redis's answer to a, if it is a refusal to keep.
func (a *asking) answered(r Result) {
	c := a.c
	if a.mode != modeAllow || c.refuse == 0 || r.Allowed || r.RetryAfter <= 0 || r.Tenant == "" ||
		r.Reason == ReasonConcurrency { // a slot may free any time: its RetryAfter is only the latest
		return
	}
	until := a.sent.Add(min(r.RetryAfter, c.refuse))
	now := c.now()
	if !until.After(now) {
		return
	}
	s := c.shard(r.Tenant)
	s.mu.Lock()
	defer s.mu.Unlock()
	gen := uint64(0)
	for _, id := range a.ids {
		gen += c.shard(id).gen.Load()
	}
	if gen != a.gen {
		return // forgotten since: the refusal may predate what was given back
	}
	e := c.entry(s, r.Tenant, now)
	if e == nil {
		return
	}
	if e.no.covers(a.n, now) && !e.no.until.Before(until) {
		return // a smaller cost already known refused for longer
	}
	e.no = refusal{n: a.n, at: a.sent, until: until, r: r}
	e.barren = false
}

// done ends a: the decisions waiting for its flight, if it led one, look
// again at what it brought.
func (a *asking) done() {
	if a.f == nil {
		return
	}
	now := a.c.now()
	s := a.c.shard(a.ids[0])
	s.mu.Lock()
	if e := s.m[a.ids[0]]; e != nil && e.flight == a.f {
		e.flight, e.demand = nil, a.f.waiting
		// a tenant refused until lately (over its limit: a token came
		// free) is likely refused again: its decisions keep waiting for
		// one flight instead of all asking Redis at once
		e.barren = e.k == 0 && !now.Before(e.no.until.Add(a.c.refuse))
	}
	s.mu.Unlock()
	close(a.f.done)
}

// forget drops what c knows of ids, after a call that may have changed
// them (given tokens back, paused them, changed their policy); c may be
// nil. Answers asked before are not kept.
func (c *local) forget(ids ...string) {
	if c == nil {
		return
	}
	for _, id := range ids {
		s := c.shard(id)
		s.mu.Lock()
		s.gen.Add(1)
		delete(s.m, id)
		s.mu.Unlock()
	}
}

// forgetAll drops what c knows of every id, after a change that may concern
// them all (the default policy); c may be nil.
func (c *local) forgetAll() {
	if c == nil {
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.gen.Add(1)
		clear(s.m)
		s.mu.Unlock()
	}
}
