package redisconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/redis/go-redis/v9"
)

// NoEviction is the only maxmemory-policy under which Redis never drops
// quotaq's keys: with an allkeys-* policy it may evict policies, buckets,
// quotas and asynq's tasks when memory runs out; with a volatile-* policy it
// evicts keys with a TTL, which are exactly the limiter's state, so limits
// silently reset.
const NoEviction = "noeviction"

// ErrEvictionPolicy is matched (errors.Is) by Open's error when the server's
// maxmemory-policy is not noeviction and --allow-eviction is not given. It is
// a configuration error of the server, not an outage.
var ErrEvictionPolicy = errors.New("redisconn: Redis may evict quotaq's keys")

// EvictionPolicy reads the server's maxmemory-policy (CONFIG GET). With Redis
// Cluster it reads every master's and returns one that is not noeviction, if
// any. Its error is the server's when CONFIG GET is refused (managed Redis,
// an ACL without +config).
func (c *Conn) EvictionPolicy(ctx context.Context) (string, error) {
	if c.Embedded {
		return NoEviction, nil // miniredis has no maxmemory: it never evicts
	}
	return evictionPolicy(ctx, c.Redis)
}

func evictionPolicy(ctx context.Context, rdb redis.UniversalClient) (string, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return nodeEvictionPolicy(ctx, rdb)
	}
	var (
		mu    sync.Mutex
		worst string
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		p, err := nodeEvictionPolicy(ctx, node)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if worst == "" || p != NoEviction {
			worst = p
		}
		return nil
	})
	return worst, err
}

func nodeEvictionPolicy(ctx context.Context, c redis.Cmdable) (string, error) {
	m, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		return "", err
	}
	p, ok := m["maxmemory-policy"]
	if !ok || p == "" {
		return "", errors.New("CONFIG GET maxmemory-policy answered nothing")
	}
	return p, nil
}

// checkEviction reads conn's maxmemory-policy into conn.EvictionPolicy and
// refuses one other than noeviction unless allow is set, in which case it
// logs a warning. When the policy cannot be read it logs that (at Warn, or
// at Info when allow is set) and goes on.
func checkEviction(ctx context.Context, conn *Conn, allow bool, logger *slog.Logger) error {
	p, err := conn.EvictionPolicy(ctx)
	switch {
	case err != nil:
		level := slog.LevelWarn
		if allow {
			level = slog.LevelInfo // the user said any policy will do
		}
		logger.Log(ctx, level, "redisconn: could not read Redis's maxmemory-policy (CONFIG GET refused?); make sure it is noeviction, or Redis may evict limits and tasks when memory runs out (--allow-eviction silences this)",
			"addr", conn.Addr, "err", err)
		return nil
	case p == NoEviction:
		conn.MaxmemoryPolicy = p
		return nil
	case allow:
		conn.MaxmemoryPolicy = p
		logger.Warn("redisconn: EVICTION ALLOWED: Redis's maxmemory-policy is not noeviction (--allow-eviction): when its memory runs out Redis may evict tenants' limits (they silently reset) and asynq's tasks (they are lost)",
			"addr", conn.Addr, "maxmemory_policy", p)
		return nil
	}
	return fmt.Errorf("%w: Redis at %s has maxmemory-policy %s, so when its memory runs out it may evict tenants' limits (they silently reset) and asynq's tasks (they are lost); set maxmemory-policy noeviction on the server (CONFIG SET maxmemory-policy noeviction, and in redis.conf), or pass --allow-eviction (QUOTAQ_ALLOW_EVICTION=1) to run anyway",
		ErrEvictionPolicy, conn.Addr, p)
}
