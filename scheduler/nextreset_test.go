package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

func TestRecordNextResetsAtStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := mustParse(t, `
entries:
  - name: hourly-acme
    cron: "0 * * * *"
    action: reset
    tenant: acme
  - name: nightly-all
    cron: "0 0 * * *"
    action: reset
    all: true
`)
	b := setupHandlers(t)
	for _, id := range []string{"acme", "globex"} {
		b.setPolicy(t, id, throttle.Policy{Rate: 100, Burst: 10, Quota: 1})
	}
	now := time.Now()
	if err := RecordNextResets(ctx, b.l, s, now); err != nil {
		t.Fatal(err)
	}
	nextHour := now.Truncate(time.Hour).Add(time.Hour)
	y, m, d := now.UTC().Date()
	midnight := time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
	for id, next := range map[string]time.Time{"acme": nextHour, "globex": midnight} {
		r := b.exhaust(t, id, 1)
		want := time.Until(next)
		if r.RetryAfter > want+time.Second || r.RetryAfter < want-5*time.Second {
			t.Errorf("%s: RetryAfter %s before any reset ran; want about %s (its entry's next firing)", id, r.RetryAfter, want)
		}
	}
}
