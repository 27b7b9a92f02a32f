package worker

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
)

// redisErrorKinds are the "kind" values of quotaq_redis_errors_total.
var redisErrorKinds = []string{"connection", "server"}

// serverDown are the error replies of a Redis that cannot serve at all
// (out of memory, a replica, loading, no master): the other error replies
// answer what was asked (NOSCRIPT, a script's own error) and are not
// counted.
var serverDown = []string{"OOM", "READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS", "MISCONF"}

// RedisHook returns a go-redis hook that counts, in
// quotaq_redis_errors_total, the calls of a client that failed for want of
// a usable server. Add it to the client the worker and asynq share:
// rdb.AddHook(m.RedisHook()).
func (m *Metrics) RedisHook() redis.Hook { return redisHook{m} }

type redisHook struct{ m *Metrics }

// DialHook counts nothing: a failed dial fails the call that needed it,
// counted once there.
func (h redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.count(err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.count(err)
		return err
	}
}

func (h redisHook) count(err error) {
	if kind := redisErrorKind(err); kind != "" {
		h.m.redisErrors.WithLabelValues(kind).Inc()
	}
}

// redisErrorKind is the kind of err to count, "" for none.
func redisErrorKind(err error) string {
	var reply redis.Error
	switch {
	case err == nil, errors.Is(err, redis.Nil), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, redis.ErrClosed):
		return ""
	case errors.As(err, &reply):
		for _, p := range serverDown {
			if strings.HasPrefix(err.Error(), p) {
				return "server"
			}
		}
		return ""
	}
	return "connection"
}
