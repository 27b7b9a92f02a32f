package scheduler

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/adaptive.lua
var adaptiveLua string

var adaptiveScript = redis.NewScript(adaptiveLua)

// adaptiveTTL is how long the adaptive state of a tenant outlives its last
// step. A tenant whose entry has not fired for that long starts over from its
// current rate.
const adaptiveTTL = 7 * 24 * time.Hour

// adaptiveKey is the hash that keeps a tenant's adaptive state.
func (h *handlers) adaptiveKey(tenant string) string {
	return h.cfg.prefix + ":adaptive:" + tenant
}

// adaptiveStep takes one AIMD step of tenant's rate for the firing at fire:
// raise it by a.Step when the tenant has not been held (its upstream said no
// 429) since the previous step, multiply it by a.Factor when it has, within
// [a.MinRate, a.MaxRate]; then store the new rate in the tenant's policy.
//
// The state (the rate, the hold count seen, the fire time) lives in Redis,
// so any worker can take the next step. A retried task does not step twice
// (it stores the rate its first run chose), and a step older than the last
// one changes nothing.
func (h *handlers) adaptiveStep(ctx context.Context, log *slog.Logger, tenant string, a Adaptive, fire time.Time) error {
	if h.cfg.rdb == nil {
		return badPayload("adjust", errors.New("an adaptive adjustment keeps its state in Redis: pass scheduler.WithRedis to RegisterHandlers"))
	}
	holds, err := h.l.HoldCount(ctx, tenant)
	if err != nil {
		return fmt.Errorf("scheduler: adaptive step of tenant %q: %w", tenant, err)
	}
	p, _, err := h.l.GetPolicy(ctx, tenant)
	if err != nil {
		return fmt.Errorf("scheduler: adaptive step of tenant %q: %w", tenant, err)
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	res, err := adaptiveScript.Run(ctx, h.cfg.rdb, []string{h.adaptiveKey(tenant)},
		holds, fire.UnixMilli(), f(p.Rate), f(a.MinRate), f(a.MaxRate), f(a.Step), f(a.Factor),
		int64(adaptiveTTL/time.Second)).StringSlice()
	if err != nil {
		return fmt.Errorf("scheduler: adaptive step of tenant %q: %w", tenant, err)
	}
	if len(res) != 2 {
		return fmt.Errorf("scheduler: adaptive step of tenant %q: unexpected reply %q", tenant, res)
	}
	rate, err := strconv.ParseFloat(res[0], 64)
	if err != nil {
		return fmt.Errorf("scheduler: adaptive step of tenant %q: rate %q in the reply: %w", tenant, res[0], err)
	}
	verdict := res[1]
	log = log.With("tenant", tenant, "verdict", verdict, "holds", holds, "from", p.Rate, "to", rate)
	if verdict == "stale" || rate == p.Rate {
		log.Debug("scheduler: adaptive step, rate unchanged")
		return nil
	}
	old := p.Rate
	p.Rate = rate
	if err := p.Validate(); err != nil {
		return badPayload("adjust", fmt.Errorf("adaptive rate %v for tenant %q (was %v): %w", rate, tenant, old, err))
	}
	if err := h.l.SetPolicy(ctx, tenant, p); err != nil {
		return fmt.Errorf("scheduler: adaptive step of tenant %q: %w", tenant, err)
	}
	log.Info("scheduler: adaptive step")
	return nil
}
