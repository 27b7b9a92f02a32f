package worker

import (
	"context"
	"time"
)

// holdSlot keeps the concurrency slot j's task took (see admit) while its
// handler runs: it renews it every third of the slot TTL, and the function
// it returns, called when the handler returns, stops renewing, releases the
// slot and wakes one task waiting for a slot of each id it freed one on. A worker
// that dies frees the slot when its TTL runs out.
func (t *Throttler) holdSlot(ctx context.Context, j *job) (release func()) {
	if m := t.metrics; m != nil {
		m.slots.WithLabelValues(m.labels(j.task.Type(), j.tenant)...).Inc()
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		holding, first := j.ids, true // the ids whose slot it renews
		tick := time.NewTicker(max(t.slotTTL/3, time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.slotTTL/3+time.Second)
			renewed, err := t.limiter.RenewSlot(rctx, j.ticket(), t.slotTTL, holding...)
			cancel()
			switch {
			case err != nil:
				t.countError(j, "limiter")
				t.logger.Warn("worker: could not renew a task's concurrency slot", "type", j.task.Type(), "tenant", j.tenant, "task_id", j.id, "err", err)
			case len(renewed) < len(holding) && !first:
				t.logger.Warn("worker: a running task's concurrency slot ran out before it was renewed; another task may have it",
					"type", j.task.Type(), "tenant", j.tenant, "task_id", j.id, "slot_ttl", t.slotTTL)
				holding = renewed
			default:
				holding = renewed // (the first renewal finds the ids with a limit)
			}
			first = false
		}
	}()
	return func() {
		close(stop)
		<-done
		if m := t.metrics; m != nil {
			m.slots.WithLabelValues(m.labels(j.task.Type(), j.tenant)...).Dec()
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		freed, err := t.limiter.ReleaseSlot(rctx, j.ticket(), j.ids...)
		if err != nil {
			t.countError(j, "limiter")
			t.logger.Warn("worker: could not release a task's concurrency slot; it frees when its TTL runs out",
				"type", j.task.Type(), "tenant", j.tenant, "task_id", j.id, "slot_ttl", t.slotTTL, "err", err)
		}
		for _, id := range freed {
			if _, err := t.requeuer.WakeOne(rctx, j.queue, id); err != nil {
				t.countError(j, "requeue")
				t.logger.Warn("worker: could not wake a task waiting for a slot", "queue", j.queue, "id", id, "err", err)
			}
		}
	}
}
