package redistest

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// IsRun reports whether a command named name runs Lua on the server: a
// script (EVALSHA, EVAL) or a function (FCALL), as a limiter decision does.
func IsRun(name string) bool {
	return name == "evalsha" || name == "eval" || name == "fcall"
}

// Runs is a go-redis hook (client.AddHook) that counts the Lua runs a
// client sends, alone or in pipelines.
type Runs struct {
	N         atomic.Int64 // runs
	Pipelines atomic.Int64 // pipelines holding at least one

	mu   sync.Mutex
	last string
}

// Last returns the command of the last run that succeeded: "fcall",
// "evalsha" or "eval" ("" when none has).
func (h *Runs) Last() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

func (h *Runs) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *Runs) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !IsRun(cmd.Name()) {
			return next(ctx, cmd)
		}
		h.N.Add(1)
		err := next(ctx, cmd)
		if err == nil {
			h.mu.Lock()
			h.last = cmd.Name()
			h.mu.Unlock()
		}
		return err
	}
}

func (h *Runs) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := int64(0)
		for _, c := range cmds {
			if IsRun(c.Name()) {
				n++
			}
		}
		if n > 0 {
			h.N.Add(n)
			h.Pipelines.Add(1)
		}
		return next(ctx, cmds)
	}
}
