package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// RecordNextResets tells the limiter when each reset entry of s fires next
// after now: for its tenants (throttle Limiter.SetQuotaReset), or for all
// (SetDefaultQuotaReset). A task refused by a quota without a period is then
// told to come back at the reset from the start, not only once a first reset
// has run and recorded the one after it. cmd/worker calls it at start-up.
func RecordNextResets(ctx context.Context, l *throttle.Limiter, s *Schedule, now time.Time) error {
	for _, e := range s.Entries {
		if e.Action != ActionReset || e.Reset == nil {
			continue
		}
		next := e.Schedule.Next(now)
		if next.IsZero() {
			continue
		}
		if e.Reset.All {
			if err := l.SetDefaultQuotaReset(ctx, next); err != nil {
				return fmt.Errorf("scheduler: entry %q: record next reset: %w", e.Name, err)
			}
			continue
		}
		for _, id := range e.Reset.Tenants {
			if err := l.SetQuotaReset(ctx, id, next); err != nil {
				return fmt.Errorf("scheduler: entry %q: record next reset of tenant %q: %w", e.Name, id, err)
			}
		}
	}
	return nil
}
