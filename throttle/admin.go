package throttle

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// SetPolicy stores tenant's policy. Every Limiter on the same Redis and
// prefix uses it from its next decision on.
func (l *Limiter) SetPolicy(ctx context.Context, tenant string, p Policy) error {
	if err := ValidateID(tenant); err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("tenant %q: %w", tenant, err)
	}
	defer l.local.forget(tenant)
	return l.writePolicy(ctx, tenant, p.fields())
}

// UpdatePolicy sets tenant's policy to what change makes of its current
// one (its own, or the default), in one step: when another process changes
// the policy meanwhile (a schedule's adjustment, an operator), change is
// called again with that policy instead of overwriting it. It returns the
// policy before and after; an error from change, or an invalid policy,
// writes nothing.
func (l *Limiter) UpdatePolicy(ctx context.Context, tenant string, change func(Policy) (Policy, error)) (before, after Policy, err error) {
	if err := ValidateID(tenant); err != nil {
		return Policy{}, Policy{}, err
	}
	defInterval, err := l.defaultInterval(ctx, tenant)
	if err != nil {
		return Policy{}, Policy{}, err
	}
	defer l.local.forget(tenant)
	k := l.keysFor(tenant)
	for range 20 {
		err = l.rdb.Watch(ctx, func(tx *redis.Tx) error {
			if before, _, err = l.readPolicy(ctx, tx, tenant); err != nil {
				return err
			}
			if after, err = change(before); err != nil {
				return err
			}
			if err := after.Validate(); err != nil {
				return fmt.Errorf("tenant %q: %w", tenant, err)
			}
			args := append([]any{defInterval}, after.fields()...)
			_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				// (Eval: a script not cached would fail only at EXEC)
				return policyScript.Eval(ctx, pipe, []string{k.tb, k.policy, k.aux}, args...).Err()
			})
			if err != nil && !errors.Is(err, redis.TxFailedErr) {
				return fmt.Errorf("%w: write policy of tenant %q: %w", ErrUnavailable, tenant, err)
			}
			return err
		}, k.policy)
		if !errors.Is(err, redis.TxFailedErr) {
			return before, after, err
		}
	}
	return before, after, fmt.Errorf("%w: policy of tenant %q changed by others 20 times while it was updated; try again", ErrUnavailable, tenant)
}

// writePolicy sets tenant's own policy hash to fields (none: deletes it),
// re-spacing its bookings at the new rate (see lua/policy.lua).
func (l *Limiter) writePolicy(ctx context.Context, tenant string, fields []any) error {
	k := l.keysFor(tenant)
	defInterval, err := l.defaultInterval(ctx, tenant)
	if err != nil {
		return err
	}
	args := append([]any{defInterval}, fields...)
	if err := policyScript.Run(ctx, l.rdb, []string{k.tb, k.policy, k.aux}, args...).Err(); err != nil {
		return fmt.Errorf("%w: write policy of tenant %q: %w", ErrUnavailable, tenant, err)
	}
	return nil
}

// defaultInterval is the default policy's interval, which policy.lua
// re-spaces bookings from when a tenant's own policy goes (0: an invalid
// stored default, no re-spacing from it).
func (l *Limiter) defaultInterval(ctx context.Context, tenant string) (int64, error) {
	def, err := l.defaults(ctx)
	switch {
	case err == nil:
		return def.p.interval(), nil
	case errors.Is(err, ErrInvalidPolicy):
		return 0, nil
	}
	return 0, fmt.Errorf("%w: write policy of tenant %q: %w", ErrUnavailable, tenant, err)
}

// GetPolicy returns tenant's policy, and whether it is the tenant's own
// (explicit) rather than the default.
func (l *Limiter) GetPolicy(ctx context.Context, tenant string) (p Policy, explicit bool, err error) {
	if err := ValidateID(tenant); err != nil {
		return Policy{}, false, err
	}
	return l.readPolicy(ctx, l.rdb, tenant)
}

// readPolicy is GetPolicy through c (a transaction's client: UpdatePolicy).
func (l *Limiter) readPolicy(ctx context.Context, c redis.Cmdable, tenant string) (p Policy, explicit bool, err error) {
	m, err := c.HGetAll(ctx, l.keysFor(tenant).policy).Result()
	if err != nil {
		return Policy{}, false, fmt.Errorf("%w: get policy of tenant %q: %w", ErrUnavailable, tenant, err)
	}
	if len(m) == 0 {
		p, err := l.defaultPolicy(ctx)
		return p, false, err
	}
	p, err = policyFromFields(m)
	return p, true, err
}

// DeletePolicy removes tenant's own policy: the default applies again.
func (l *Limiter) DeletePolicy(ctx context.Context, tenant string) error {
	if err := ValidateID(tenant); err != nil {
		return err
	}
	defer l.local.forget(tenant)
	return l.writePolicy(ctx, tenant, nil)
}

func (l *Limiter) defaultKey() string { return l.prefix + ":default-policy" }

// SetDefaultPolicy stores the policy of tenants that have none of their own.
// Every Limiter on the same Redis and prefix uses it within its refresh
// interval (WithPolicyRefresh), this one at once.
func (l *Limiter) SetDefaultPolicy(ctx context.Context, p Policy) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("default policy: %w", err)
	}
	// every policy field is written, so HSET replaces the old policy whole
	// and keeps the recorded quota reset ('next')
	if err := l.rdb.HSet(ctx, l.defaultKey(), p.fields()...).Err(); err != nil {
		return fmt.Errorf("%w: set default policy: %w", ErrUnavailable, err)
	}
	var next int64
	if c := l.def.Load(); c != nil {
		next = c.next
	}
	l.def.Store(&cachedPolicy{p: p, next: next, read: time.Now()})
	l.local.forgetAll()
	return nil
}

// DefaultPolicy returns the policy of tenants without their own.
func (l *Limiter) DefaultPolicy(ctx context.Context) (Policy, error) {
	return l.defaultPolicy(ctx)
}

// defaultPolicy returns the stored default policy.
func (l *Limiter) defaultPolicy(ctx context.Context) (Policy, error) {
	d, err := l.defaults(ctx)
	return d.p, err
}

// defaults returns the stored default policy and quota reset, read again
// once the cached ones are older than the refresh interval (by one caller at
// a time: the others use the cached ones meanwhile).
func (l *Limiter) defaults(ctx context.Context) (*cachedPolicy, error) {
	c := l.def.Load()
	if c != nil && time.Since(c.read) < l.refresh {
		return c, nil
	}
	if c != nil && !l.refreshing.TryLock() {
		return c, nil
	}
	if c == nil {
		l.refreshing.Lock()
	}
	defer l.refreshing.Unlock()
	if c2 := l.def.Load(); c2 != nil && c2 != c {
		return c2, nil
	}
	d := &cachedPolicy{p: l.fallback}
	m, err := l.rdb.HGetAll(ctx, l.defaultKey()).Result()
	if err != nil {
		return d, fmt.Errorf("read default policy: %w", err)
	}
	if m["rate"] != "" {
		if d.p, err = policyFromFields(m); err != nil {
			return &cachedPolicy{p: l.fallback}, fmt.Errorf("%w: %w (store a valid one with SetDefaultPolicy)", ErrInvalidPolicy, err)
		}
	}
	if m["next"] != "" {
		d.next, _ = strconv.ParseInt(m["next"], 10, 64)
	}
	if err := d.p.Validate(); err != nil {
		return d, fmt.Errorf("default policy %v: %w (store a valid one with SetDefaultPolicy)", d.p, err)
	}
	d.read = time.Now()
	l.def.Store(d)
	return d, nil
}

// SetDefaultQuotaReset records when the quota period of every tenant without
// a recorded reset of its own (SetQuotaReset) will end: a decision refused by
// such a quota then says RetryAfter = the time until at. The scheduler
// records its next firing here when it resets all quotas.
func (l *Limiter) SetDefaultQuotaReset(ctx context.Context, at time.Time) error {
	if err := l.rdb.HSet(ctx, l.defaultKey(), "next", at.UnixMicro()).Err(); err != nil {
		return fmt.Errorf("%w: set default quota reset: %w", ErrUnavailable, err)
	}
	if c := l.def.Load(); c != nil {
		l.def.Store(&cachedPolicy{p: c.p, next: at.UnixMicro(), read: c.read})
	}
	return nil
}

// Reset gives tenant a full bucket and a fresh quota period, and lifts any
// pause and pending bookings. Its policy stays.
func (l *Limiter) Reset(ctx context.Context, tenant string) error {
	if err := ValidateID(tenant); err != nil {
		return err
	}
	defer l.local.forget(tenant)
	k := l.keysFor(tenant)
	// one slot, one transaction: the tenant is reset atomically
	pipe := l.rdb.TxPipeline()
	for _, a := range algorithms {
		pipe.Del(ctx, l.base(tenant)+a.short)
	}
	pipe.Del(ctx, k.quota, k.aux)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("%w: reset tenant %q: %w", ErrUnavailable, tenant, err)
	}
	return nil
}

// ResetQuota starts a new quota period for each tenant: its used count goes
// back to 0. Each tenant is reset atomically; the tenants are sent in one
// pipeline.
func (l *Limiter) ResetQuota(ctx context.Context, tenants ...string) error {
	for _, t := range tenants {
		if err := ValidateID(t); err != nil {
			return err
		}
	}
	defer l.local.forget(tenants...)
	for start := 0; start < len(tenants); start += resetBatch {
		end := min(start+resetBatch, len(tenants))
		pipe := l.rdb.Pipeline()
		for _, t := range tenants[start:end] {
			pipe.HDel(ctx, l.keysFor(t).quota, "used", "win")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("%w: reset quota of %d tenants: %w", ErrUnavailable, end-start, err)
		}
	}
	return nil
}

// resetBatch is how many keys one pipeline of a quota reset touches.
const resetBatch = 1000

// ResetAllQuotas starts a new quota period for every tenant that has used
// some of its quota, and returns how many were reset. It scans the keys in
// batches (SCAN, then one pipeline of HDEL per batch), so it neither blocks
// Redis nor costs a round trip per tenant; each tenant is reset atomically.
func (l *Limiter) ResetAllQuotas(ctx context.Context) (int, error) {
	defer l.local.forgetAll()
	total := 0
	err := l.scan(ctx, l.prefix+":{*}:quota", func(ctx context.Context, c redis.UniversalClient, batch []string) error {
		pipe := c.Pipeline()
		for _, k := range batch {
			pipe.HDel(ctx, k, "used", "win")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		total += len(batch)
		return nil
	})
	if err != nil {
		return total, fmt.Errorf("%w: reset all quotas (%d done): %w", ErrUnavailable, total, err)
	}
	return total, nil
}

// SetQuotaReset records when tenant's quota period will end, for a quota
// without a QuotaPeriod that a schedule resets: a decision refused by the
// quota then says RetryAfter = the time until at.
func (l *Limiter) SetQuotaReset(ctx context.Context, tenant string, at time.Time) error {
	if err := ValidateID(tenant); err != nil {
		return err
	}
	if err := l.rdb.HSet(ctx, l.keysFor(tenant).quota, "next", at.UnixMicro()).Err(); err != nil {
		return fmt.Errorf("%w: set quota reset of tenant %q: %w", ErrUnavailable, tenant, err)
	}
	return nil
}

// Tenants returns the ids of the tenants with a policy of their own, and
// of the upstreams with one (as Upstream(name), see UpstreamName).
func (l *Limiter) Tenants(ctx context.Context) ([]string, error) {
	var ids []string
	pre := l.prefix + ":{"
	err := l.scan(ctx, pre+"*}:policy", func(_ context.Context, _ redis.UniversalClient, batch []string) error {
		for _, k := range batch {
			ids = append(ids, unescapeTenant(strings.TrimSuffix(strings.TrimPrefix(k, pre), "}:policy")))
		}
		return nil
	})
	if err != nil {
		return ids, fmt.Errorf("%w: list tenants: %w", ErrUnavailable, err)
	}
	return ids, nil
}

// scan calls fn with batches of the keys that match pattern, on every master
// of a Cluster or on the one server otherwise.
func (l *Limiter) scan(ctx context.Context, pattern string, fn func(context.Context, redis.UniversalClient, []string) error) error {
	one := func(ctx context.Context, c redis.UniversalClient) error {
		var cursor uint64
		for {
			batch, next, err := c.Scan(ctx, cursor, pattern, resetBatch).Result()
			if err != nil {
				return err
			}
			if len(batch) > 0 {
				if err := fn(ctx, c, batch); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := l.rdb.(*redis.ClusterClient); ok {
		var mu = make(chan struct{}, 1)
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu <- struct{}{} // fn is not safe for concurrent use
			defer func() { <-mu }()
			return one(ctx, c)
		})
	}
	return one(ctx, l.rdb)
}

// Standing is a tenant's state now, for status views.
type Standing struct {
	Tenant   string
	Policy   Policy
	Explicit bool  // Policy is the tenant's own, not the default
	Holds    int64 // times the tenant was paused by Hold
	InFlight int64 // calls holding one of its slots (Policy.Concurrency)
	// HoldLeft is how long its pause (Hold, Backoff) has left; 0: none.
	HoldLeft time.Duration
	// LearnedRate is the rate (per second) it runs at while it climbs back
	// to its policy's after its upstream refused calls (Backoff), and
	// LearnedFullIn how long until it is back; 0: at its policy's rate.
	LearnedRate   float64
	LearnedFullIn time.Duration
	// Booked is how many bookings (Request.Ticket) wait to be redeemed:
	// their tokens, and quota, are counted as spent already.
	Booked int64
	Result // Peek: tokens now, quota left, pause
}

// Standing returns tenant's policy and what a decision would see now,
// consuming nothing.
func (l *Limiter) Standing(ctx context.Context, tenant string) (Standing, error) {
	p, explicit, err := l.GetPolicy(ctx, tenant)
	if err != nil {
		return Standing{}, err
	}
	r, err := l.Peek(ctx, tenant)
	if err != nil {
		return Standing{}, err
	}
	h, err := l.HoldCount(ctx, tenant)
	if err != nil {
		return Standing{}, err
	}
	var inFlight int64
	if p.Concurrency > 0 {
		if inFlight, err = l.InFlight(ctx, tenant); err != nil {
			return Standing{}, err
		}
	}
	k := l.keysFor(tenant)
	v, err := standingScript.Run(ctx, l.rdb, []string{k.aux, k.policy}, p.interval()).Int64Slice()
	if err != nil {
		return Standing{}, fmt.Errorf("%w: standing of %q: %w", ErrUnavailable, tenant, err)
	}
	if len(v) != 4 {
		return Standing{}, fmt.Errorf("throttle: unexpected standing reply %v", v)
	}
	s := Standing{Tenant: tenant, Policy: p, Explicit: explicit, Holds: h, InFlight: inFlight, Result: r,
		HoldLeft: time.Duration(v[0]) * time.Microsecond, Booked: v[3]}
	if v[1] >= 0 {
		s.LearnedRate, s.LearnedFullIn = float64(v[1])/1000, time.Duration(v[2])*time.Microsecond
	}
	return s, nil
}
