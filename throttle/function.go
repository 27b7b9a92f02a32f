package throttle

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Decisions run as a Redis function (FCALL) where the server has them (Redis
// 7 and later): the functions of decide.lua and the files before it are then
// made once, when the library is loaded, instead of on every script run. A
// server without functions (Redis 6, miniredis), or a user not allowed to
// load one, runs the same Lua as a script (EVALSHA), as before.
//
// The library is named by its code (algorithm.lib), loaded on first use and
// again whenever the server has lost it (a restart without persistence, a
// new Cluster node); two versions of quotaq each load and call their own.

// call adds one run of decide.lua with keys and args to c (a client or a
// pipeline).
func (l *Limiter) call(ctx context.Context, c redis.Cmdable, keys []string, args []any) *redis.Cmd {
	if l.noFunctions.Load() {
		return l.algo.decide.EvalSha(ctx, c, keys, args...)
	}
	return c.FCall(ctx, l.algo.fn, keys, args...)
}

// missing reports whether a run failed only because its code is not on the
// server: a script not cached (NOSCRIPT) or a function library not loaded.
func missing(cmd *redis.Cmd) bool {
	err := cmd.Err()
	return err != nil && (strings.HasPrefix(err.Error(), "NOSCRIPT") || strings.Contains(err.Error(), "Function not found") ||
		unsupported(err))
}

// unsupported reports whether err says this server or user cannot run
// functions.
func unsupported(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "unknown command") || strings.HasPrefix(msg, "NOPERM")
}

// load puts the code of decide.lua on the server after a run failed with
// err (see missing): the function library, on every master of a Cluster,
// or the script when the server or user cannot run functions.
func (l *Limiter) load(ctx context.Context, err error) {
	if !l.noFunctions.Load() {
		if !unsupported(err) {
			err = loadLibrary(ctx, l.rdb, l.algo.lib)
		}
		if err == nil || !unsupported(err) {
			return // loaded, or an outage the next run reports
		}
		l.noFunctions.Store(true)
	}
	_ = l.algo.decide.Load(ctx, l.rdb).Err()
}

func loadLibrary(ctx context.Context, rdb redis.UniversalClient, lib string) error {
	one := func(ctx context.Context, c redis.Cmdable) error {
		err := c.FunctionLoad(ctx, lib).Err()
		if err != nil && strings.Contains(err.Error(), "already exists") {
			return nil
		}
		return err
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return one(ctx, c) })
	}
	return one(ctx, rdb)
}
