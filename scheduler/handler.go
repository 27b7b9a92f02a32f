package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
)

// RegisterHandlers registers on mux the handlers of TypeQuotaReset and
// TypeQuotaAdjust, which act on l. Options: WithLogger, WithRelease to
// bring back the tasks a change frees, WithMetrics.
//
// A change made by a handler is seen by every limiter on the same Redis and
// prefix from its next decision on (a default policy: within the limiter's
// policy refresh interval). A payload that cannot be read or applied fails
// with asynq.SkipRetry, so it is archived rather than retried; a Redis error
// is returned as is, so asynq retries the task.
func RegisterHandlers(mux *asynq.ServeMux, l *throttle.Limiter, opts ...Option) {
	h := newHandlers(l, opts)
	mux.HandleFunc(TypeQuotaReset, h.counted(ActionReset, h.reset))
	mux.HandleFunc(TypeQuotaAdjust, h.counted(ActionAdjust, h.adjust))
}

type handlers struct {
	l   *throttle.Limiter
	cfg config
}

func newHandlers(l *throttle.Limiter, opts []Option) *handlers {
	return &handlers{l: l, cfg: newConfig(opts)}
}

// counted counts fn's results in the metrics (WithMetrics).
func (h *handlers) counted(action string, fn asynq.HandlerFunc) asynq.HandlerFunc {
	return func(ctx context.Context, t *asynq.Task) error {
		err := fn(ctx, t)
		h.cfg.metrics.acted(action, err)
		return err
	}
}

// badPayload marks an error that retrying cannot fix.
func badPayload(kind string, err error) error {
	return fmt.Errorf("scheduler: %s task: %w (%w)", kind, err, asynq.SkipRetry)
}

func (h *handlers) reset(ctx context.Context, t *asynq.Task) error {
	var r Reset
	if err := json.Unmarshal(t.Payload(), &r); err != nil {
		return badPayload("reset", fmt.Errorf("payload is not JSON: %w", err))
	}
	if err := r.Validate(); err != nil {
		return badPayload("reset", err)
	}
	log := h.cfg.logger.With("task", TypeQuotaReset, "entry", r.Entry, "fire_time", r.FireTime)
	if r.All {
		n, err := h.l.ResetAllQuotas(ctx)
		if err != nil {
			return fmt.Errorf("scheduler: reset all quotas (%d reset before the error): %w", n, err)
		}
		if !r.NextReset.IsZero() {
			if err := h.l.SetDefaultQuotaReset(ctx, r.NextReset); err != nil {
				return fmt.Errorf("scheduler: record next quota reset of all tenants: %w", err)
			}
		}
		log.Info("scheduler: quotas reset", "tenants", n, "all", true, "next_reset", r.NextReset)
		h.releaseParked(ctx, log)
		return nil
	}
	if err := h.l.ResetQuota(ctx, r.Tenants...); err != nil {
		return fmt.Errorf("scheduler: reset quotas of %d tenants: %w", len(r.Tenants), err)
	}
	if !r.NextReset.IsZero() {
		for _, id := range r.Tenants {
			if err := h.l.SetQuotaReset(ctx, id, r.NextReset); err != nil {
				return fmt.Errorf("scheduler: record next quota reset of tenant %q: %w", id, err)
			}
		}
	}
	log.Info("scheduler: quotas reset", "tenants", len(r.Tenants), "next_reset", r.NextReset)
	h.releaseParked(ctx, log, r.Tenants...)
	return nil
}

// releaseParked brings back the parked tasks of tenants (none: every
// tenant) with WithRelease's function. A failure is logged, not returned:
// the change is made, and a retry would make it again; the tasks still come
// back when they were due.
func (h *handlers) releaseParked(ctx context.Context, log *slog.Logger, tenants ...string) {
	if h.cfg.release == nil {
		return
	}
	n, err := h.cfg.release(ctx, tenants...)
	if err != nil {
		log.Warn("scheduler: could not bring back parked tasks; they run when they were due", "err", err)
		return
	}
	if n > 0 {
		log.Info("scheduler: parked tasks brought back", "tasks", n)
	}
}

func (h *handlers) adjust(ctx context.Context, t *asynq.Task) error {
	var a Adjust
	if err := json.Unmarshal(t.Payload(), &a); err != nil {
		return badPayload("adjust", fmt.Errorf("payload is not JSON: %w", err))
	}
	if err := a.Validate(); err != nil {
		return badPayload("adjust", err)
	}
	log := h.cfg.logger.With("task", TypeQuotaAdjust, "entry", a.Entry, "fire_time", a.FireTime)
	// Read and check every new policy first, so that an invalid one
	// changes nothing.
	type change struct {
		tenant string // "" for the default policy
		p      throttle.Policy
	}
	var changes []change
	tenants := a.Tenants
	if a.All {
		def, err := h.l.DefaultPolicy(ctx)
		if err != nil {
			return fmt.Errorf("scheduler: read the default policy: %w", err)
		}
		changes = append(changes, change{"", a.Apply(def)})
		if tenants, err = h.l.Tenants(ctx); err != nil {
			return fmt.Errorf("scheduler: list tenants: %w", err)
		}
	}
	for _, id := range tenants {
		p, _, err := h.l.GetPolicy(ctx, id)
		if err != nil {
			return fmt.Errorf("scheduler: read policy of tenant %q: %w", id, err)
		}
		changes = append(changes, change{id, a.Apply(p)})
	}
	for _, c := range changes {
		if err := c.p.Validate(); err != nil {
			who := "the default policy"
			if c.tenant != "" {
				who = fmt.Sprintf("tenant %q", c.tenant)
			}
			return badPayload("adjust", fmt.Errorf("the adjustment would give %s an invalid policy: %w", who, err))
		}
	}
	for _, c := range changes {
		var err error
		if c.tenant == "" {
			err = h.l.SetDefaultPolicy(ctx, c.p)
		} else {
			// applied to the policy as it is when written: a change made
			// since it was read above (an operator's) is adjusted, not lost
			_, _, err = h.l.UpdatePolicy(ctx, c.tenant, func(p throttle.Policy) (throttle.Policy, error) {
				return a.Apply(p), nil
			})
		}
		if err != nil {
			return fmt.Errorf("scheduler: adjust: %w", err)
		}
	}
	log.Info("scheduler: policies adjusted", "all", a.All, "tenants", len(tenants))
	if a.All {
		tenants = nil // every tenant
	}
	h.releaseParked(ctx, log, tenants...)
	return nil
}
