package throttle

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// LocalStats counts, since the Limiter was made, the decisions it could
// have answered without Redis (WithLeases, WithRefusalCache): those it did,
// and those it sent to Redis. Leased / (Leased + Asked) is the share of
// decisions a lease saved a round trip; decisions that cannot use local
// state (several ids with leases, a concurrency limit) are not counted.
type LocalStats struct {
	Leased  int64 // admitted from tokens leased to this Limiter
	Refused int64 // refused from a refusal known here
	Asked   int64 // not answered here: sent to Redis
}

// LocalStats returns the Limiter's counts of local answers; all 0 when it
// keeps no local state.
func (l *Limiter) LocalStats() LocalStats {
	c := l.local
	if c == nil {
		return LocalStats{}
	}
	return LocalStats{Leased: c.leaseHits.Load(), Refused: c.refusalHits.Load(), Asked: c.asked.Load()}
}

// HoldSummary counts the pauses (Hold, Backoff) in force now, of tenants
// and of upstream ids, and the longest time one of them has left.
type HoldSummary struct {
	Tenants, Upstreams               int
	TenantsLongest, UpstreamsLongest time.Duration
}

// Holds returns the pauses in force now, over every id. It scans the ids'
// keys (SCAN, then one pipeline per batch), so its cost grows with the
// number of ids that were paused, slowed or booked lately: call it every
// few seconds at most.
func (l *Limiter) Holds(ctx context.Context) (HoldSummary, error) {
	var s HoldSummary
	pre := l.prefix + ":{"
	err := l.scan(ctx, pre+"*}:aux", func(ctx context.Context, c redis.UniversalClient, batch []string) error {
		pipe := c.Pipeline()
		now := pipe.Time(ctx)
		until := make([]*redis.StringCmd, len(batch))
		for i, k := range batch {
			until[i] = pipe.HGet(ctx, k, "h")
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return err
		}
		t, err := now.Result()
		if err != nil {
			return err
		}
		nowUs := t.UnixMicro()
		for i, k := range batch {
			v, err := until[i].Result()
			if err != nil {
				continue // no pause recorded (redis.Nil)
			}
			us, err := strconv.ParseInt(v, 10, 64)
			if err != nil || us <= nowUs {
				continue
			}
			left := time.Duration(us-nowUs) * time.Microsecond
			id := unescapeTenant(strings.TrimSuffix(strings.TrimPrefix(k, pre), "}:aux"))
			if _, up := UpstreamName(id); up {
				s.Upstreams++
				s.UpstreamsLongest = max(s.UpstreamsLongest, left)
			} else {
				s.Tenants++
				s.TenantsLongest = max(s.TenantsLongest, left)
			}
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("%w: count holds: %w", ErrUnavailable, err)
	}
	return s, nil
}
