// Package shadowrec records in Redis that workers run in shadow mode (they
// decide and count what they would throttle, and run every task), and how
// many of each tenant's tasks they would have throttled, so that
// quotaq-enqueue's status views can say decisions are not enforced.
//
// A worker in shadow writes its record every few seconds (Write), with an
// entry that runs out unless written again, so a worker that dies stops
// counting as in shadow; the status views read it (Read). Two keys, under
// the limiter's prefix (which an ACL user's key patterns allow) and one hash
// tag, so one script writes both on a Cluster; no tenant's keys can have
// that tag, as a tenant's escapes ':':
//
//	<prefix>:{:shadow}:workers    zset: worker id -> when its entry runs out (Redis time, Unix ms)
//	<prefix>:{:shadow}:throttled  hash: tenant -> would-be throttles; kept a while after the last worker in shadow stops
//
// The counts are bounded: past Record.MaxTenants tenants, the others are
// added up in one count (State.Others).
package shadowrec

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed shadow.lua
	shadowLua    string
	shadowScript = redis.NewScript(shadowLua)
)

// Fields of the counts hash that are not tenants (a tenant id has no
// control character).
const (
	sinceField  = "\x00since"
	othersField = "\x00others"
)

func workersKey(prefix string) string   { return prefix + ":{:shadow}:workers" }
func throttledKey(prefix string) string { return prefix + ":{:shadow}:throttled" }

// Record is what one worker writes.
type Record struct {
	// Worker is the worker's id, unique among the workers.
	Worker string
	// TTL is how long its entry lasts unless written again; 0 removes it
	// (the worker stops).
	TTL time.Duration
	// Keep is how long the counts are kept after this write.
	Keep time.Duration
	// MaxTenants is the most tenants counted by name.
	MaxTenants int
	// Throttled are the would-be throttles by tenant since the last write.
	Throttled map[string]int64
	// Others are the would-be throttles since the last write of tenants
	// not in Throttled (the worker keeps a bounded map).
	Others int64
}

// Write writes r under prefix and returns how many workers are in shadow
// now.
func Write(ctx context.Context, rdb redis.Scripter, prefix string, r Record) (int, error) {
	args := make([]any, 0, 5+2*len(r.Throttled))
	args = append(args, r.Worker, r.TTL.Milliseconds(), max(r.Keep.Milliseconds(), 1), r.MaxTenants, max(r.Others, 0))
	for tenant, n := range r.Throttled {
		if n > 0 {
			args = append(args, tenant, n)
		}
	}
	live, err := shadowScript.Run(ctx, rdb, []string{workersKey(prefix), throttledKey(prefix)}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("shadowrec: record shadow mode: %w", err)
	}
	return live, nil
}

// State is what the workers in shadow recorded.
type State struct {
	// Workers is how many workers run in shadow now.
	Workers int
	// Since is when counting began; zero when nothing is counted (no
	// worker ran in shadow lately).
	Since time.Time
	// Throttled are the would-be throttles of the tenants asked for that
	// have some.
	Throttled map[string]int64
	// Others are the would-be throttles of the tenants past the most
	// counted by name.
	Others int64
}

// On reports whether workers run in shadow now, or did lately (their counts
// are still kept).
func (s State) On() bool { return s.Workers > 0 || !s.Since.IsZero() }

// Read returns the record under prefix, with the counts of the given
// tenants.
func Read(ctx context.Context, rdb redis.UniversalClient, prefix string, tenants ...string) (State, error) {
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		return State{}, fmt.Errorf("shadowrec: read shadow mode: %w", err)
	}
	pipe := rdb.Pipeline()
	workers := pipe.ZCount(ctx, workersKey(prefix), "("+strconv.FormatInt(now.UnixMilli(), 10), "+inf")
	counts := pipe.HMGet(ctx, throttledKey(prefix), append([]string{sinceField, othersField}, tenants...)...)
	if _, err := pipe.Exec(ctx); err != nil {
		return State{}, fmt.Errorf("shadowrec: read shadow mode: %w", err)
	}
	s := State{Workers: int(workers.Val()), Throttled: map[string]int64{}}
	vals := counts.Val()
	if ms, ok := count(vals[0]); ok {
		s.Since = time.UnixMilli(ms)
	}
	s.Others, _ = count(vals[1])
	for i, tenant := range tenants {
		if n, ok := count(vals[2+i]); ok {
			s.Throttled[tenant] = n
		}
	}
	return s, nil
}

// count reads a hash field's value; false when it is missing or not a
// number.
func count(v any) (int64, bool) {
	s, ok := v.(string)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
