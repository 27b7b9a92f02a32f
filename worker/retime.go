package worker

import (
	"context"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// After the limiter moved a tenant's booked slots (a pause, a slower rate
// learned from a 429: throttle.Limiter.Backoff), the tenant's tasks parked
// at their old slots would each come back early, only to be put back once
// more. The Throttler moves them to their new slots instead: one run per
// tenant at a time, again if asked meanwhile.

// retimeLater moves tenant's parked tasks to their slots' new times, in the
// background.
func (t *Throttler) retimeLater(tenant string) {
	t.retimeMu.Lock()
	defer t.retimeMu.Unlock()
	if t.retiming == nil {
		t.retiming = map[string]bool{}
	}
	if _, running := t.retiming[tenant]; running {
		t.retiming[tenant] = true // again when this run ends
		return
	}
	t.retiming[tenant] = false
	t.retimers.Add(1)
	go func() {
		defer t.retimers.Done()
		for {
			t.retime(tenant)
			t.retimeMu.Lock()
			again := t.retiming[tenant]
			if !again {
				delete(t.retiming, tenant)
				t.retimeMu.Unlock()
				return
			}
			t.retiming[tenant] = false
			t.retimeMu.Unlock()
		}
	}()
}

// ticketDues gives Requeuer.Retime the due times of tenant's tasks'
// bookings.
func ticketDues(ctx context.Context, l *throttle.Limiter, tenant string) func(string, []string) ([]time.Time, error) {
	return func(queue string, ids []string) ([]time.Time, error) {
		tickets := make([]string, len(ids))
		for i, id := range ids {
			tickets[i] = TaskTicket(queue, id)
		}
		return l.TicketDues(ctx, tenant, tickets...)
	}
}

func (t *Throttler) retime(tenant string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	moved, err := t.requeuer.Retime(ctx, tenant, ticketDues(ctx, t.limiter, tenant))
	n := 0
	for queue, dues := range moved {
		for _, d := range dues {
			t.waker.Add(queue, d.ID, d.DueMillis)
		}
		n += len(dues)
	}
	if err != nil {
		t.logger.Warn("worker: could not move the tenant's waiting tasks to their new slots; they come back early and are put back once more", "tenant", tenant, "err", err)
		return
	}
	t.logger.Debug("worker: waiting tasks moved to their new slots", "tenant", tenant, "tasks", n)
}
