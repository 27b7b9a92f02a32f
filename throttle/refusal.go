package throttle

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// WithRefusalCache lets a Limiter answer a decision locally, without asking
// Redis, when it already knows the answer is no: an id refused n tokens with
// RetryAfter d is refused locally, for any decision of n or more tokens
// that involves it, until d has passed or max has, whichever is first.
// Default 0: off, every decision asks Redis.
//
// It never admits locally, so it cannot over-admit: without outside changes
// the tokens cannot be there before d has passed (d is counted from when the
// request was sent, before Redis computed it). It can refuse for too long
// when something outside this Limiter gives tokens back: another process's
// Reset, SetPolicy, DeletePolicy, SetDefaultPolicy, ResetQuota or CancelN
// takes effect here at most max later. The same calls on this Limiter take
// effect at once. A refusal whose RetryAfter is unknown (-1: n above the
// burst) is not cached. Only Allow, AllowN and AllowMulti use the cache;
// Peek and the reservations always ask Redis.
//
// A locally refused Result is the one Redis gave, aged: RetryAfter,
// ResetAfter and QuotaResetAfter are shortened by the time since.
//
// When a refusal expires, the decisions of that id that arrive while one of
// them is asking Redis wait for its answer instead of all asking at once; if
// it is a refusal they share it, otherwise each asks Redis itself.
//
// At most 100,000 ids are remembered at once; past that, refusals are not
// cached until earlier ones expire.
func WithRefusalCache(max time.Duration) Option {
	return func(l *Limiter) {
		if max <= 0 {
			l.refused = nil
			return
		}
		l.refused = newRefusalCache(max, maxRefusals)
	}
}

// allowCached is AllowMulti with a refusal cache.
func (l *Limiter) allowCached(ctx context.Context, n int64, ids []string) (Result, error) {
	c, cost := l.refused, max(n, 1)
	if r, ok := c.check(ids, cost); ok {
		return r, nil
	}
	if len(ids) == 1 {
		f, lead := c.join(ids[0], cost)
		if lead {
			defer c.land(ids[0], f)
		} else if f != nil {
			select {
			case <-f.done:
				if r, ok := c.check(ids, cost); ok {
					return r, nil
				}
			case <-ctx.Done():
			}
		}
	}
	sent, epoch := c.now(), c.epoch.Load()
	d, err := l.run(ctx, modeAllow, Request{IDs: ids, N: n})
	if err == nil {
		c.remember(d.Result, cost, sent, epoch)
	}
	return d.Result, err
}

// maxRefusals bounds the ids a refusal cache holds.
const maxRefusals = 100_000

// refusalShards spreads the cache's lock over this many maps.
const refusalShards = 32

// refusalCache remembers, per id, until when a decision of n tokens or more
// is known to be refused.
type refusalCache struct {
	max    time.Duration
	perMap int // entries per shard
	now    func() time.Time
	seed   maphash.Seed
	epoch  atomic.Uint64 // bumped by forget: refusals older than it are stale
	shards [refusalShards]refusalShard
}

type refusalShard struct {
	mu      sync.Mutex
	m       map[string]refusal
	flights map[string]*flight // decisions asking Redis, by id
}

// flight is a decision of one id on its way to Redis; decisions of the same
// id that arrive meanwhile wait for it.
type flight struct {
	n       int64 // its cost: it can only tell a cost at least as high
	done    chan struct{}
	waiting atomic.Int32 // callers waiting for it (tests read it)
}

// join returns the flight of id to wait for (lead false), or a new one that
// the caller leads and must land (lead true), or nil when the caller should
// simply ask: a flight of a higher cost is in the air.
func (c *refusalCache) join(id string, n int64) (f *flight, lead bool) {
	s := c.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.flights[id]; f != nil {
		if f.n > n {
			return nil, false
		}
		f.waiting.Add(1)
		return f, false
	}
	f = &flight{n: n, done: make(chan struct{})}
	s.flights[id] = f
	return f, true
}

// land ends flight f of id: its answer, if a refusal, is in the cache.
func (c *refusalCache) land(id string, f *flight) {
	s := c.shard(id)
	s.mu.Lock()
	if s.flights[id] == f {
		delete(s.flights, id)
	}
	s.mu.Unlock()
	close(f.done)
}

type refusal struct {
	n     int64     // the smallest cost known to be refused
	at    time.Time // when the refused request was sent
	until time.Time // refused until then
	r     Result    // Redis's answer
}

func newRefusalCache(bound time.Duration, size int) *refusalCache {
	c := &refusalCache{max: bound, perMap: max(1, size/refusalShards), now: time.Now, seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]refusal)
		c.shards[i].flights = make(map[string]*flight)
	}
	return c
}

func (c *refusalCache) shard(id string) *refusalShard {
	return &c.shards[maphash.String(c.seed, id)%refusalShards]
}

// check returns the cached refusal of a decision of n tokens over ids, if
// one of them is known to refuse it now.
func (c *refusalCache) check(ids []string, n int64) (Result, bool) {
	now := c.now()
	for _, id := range ids {
		s := c.shard(id)
		s.mu.Lock()
		e, ok := s.m[id]
		if ok && !now.Before(e.until) {
			delete(s.m, id)
			ok = false
		}
		s.mu.Unlock()
		if ok && n >= e.n {
			return e.aged(now), true
		}
	}
	return Result{}, false
}

// aged returns the cached Result as of now.
func (e refusal) aged(now time.Time) Result {
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

// remember records r, the refusal of n tokens by r.Tenant for a request
// sent at sent, when the cache was at epoch. A refusal sent before a forget
// may predate what that call gave back: it is not recorded.
func (c *refusalCache) remember(r Result, n int64, sent time.Time, epoch uint64) {
	if r.Allowed || r.RetryAfter <= 0 || r.Tenant == "" {
		return
	}
	until := sent.Add(min(r.RetryAfter, c.max))
	if !until.After(c.now()) {
		return
	}
	s := c.shard(r.Tenant)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.epoch.Load() != epoch {
		return
	}
	if e, ok := s.m[r.Tenant]; ok && e.n <= n && !e.until.Before(until) {
		return // a smaller cost already known refused for longer
	}
	if len(s.m) >= c.perMap {
		c.sweep(s)
		if len(s.m) >= c.perMap {
			return
		}
	}
	s.m[r.Tenant] = refusal{n: n, at: sent, until: until, r: r}
}

// sweep drops the shard's expired entries; s.mu is held.
func (c *refusalCache) sweep(s *refusalShard) {
	now := c.now()
	for id, e := range s.m {
		if !now.Before(e.until) {
			delete(s.m, id)
		}
	}
}

// forget drops what is known of ids, after a call that may have given them
// tokens back.
func (c *refusalCache) forget(ids ...string) {
	c.epoch.Add(1)
	for _, id := range ids {
		s := c.shard(id)
		s.mu.Lock()
		delete(s.m, id)
		s.mu.Unlock()
	}
}

// forgetAll drops everything, after a change that may concern every id.
func (c *refusalCache) forgetAll() {
	c.epoch.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}

// forgetRefusals and forgetAllRefusals drop what this Limiter knows locally
// of ids (of every id): cached refusals and leases.
func (l *Limiter) forgetRefusals(ids ...string) {
	if l.refused != nil {
		l.refused.forget(ids...)
	}
	if l.leases != nil && len(ids) > 0 {
		l.leases.forget(ids...)
	}
}

func (l *Limiter) forgetAllRefusals() {
	if l.refused != nil {
		l.refused.forgetAll()
	}
	if l.leases != nil {
		l.leases.forget()
	}
}
