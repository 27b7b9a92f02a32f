package throttle_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// LocalStats counts the decisions a lease or a known refusal answered and
// those sent to Redis; every count is 0 on a Limiter without local state,
// and together they add up to the decisions made.
func TestLocalStatsCountLocalAnswers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name  string
		opts  []throttle.Option
		calls func(l *throttle.Limiter) error
		check func(s throttle.LocalStats) bool
	}{
		{"NoLocalState", nil, func(l *throttle.Limiter) error {
			_, err := l.Allow(ctx, "plain")
			return err
		}, func(s throttle.LocalStats) bool { return s == throttle.LocalStats{} }},
		{"Leases", []throttle.Option{throttle.WithLeases(time.Minute, 64), throttle.WithDefaultPolicy(throttle.PerSecond(1_000_000))},
			func(l *throttle.Limiter) error {
				for i := range 100 {
					if _, err := l.Reserve(ctx, throttle.Request{IDs: []string{"busy"}, N: 1, Ticket: fmt.Sprint("job-", i)}); err != nil {
						return err
					}
				}
				return nil
			}, func(s throttle.LocalStats) bool {
				return s.Leased+s.Asked == 100 && s.Leased > s.Asked && s.Refused == 0
			}},
		{"RefusalCache", []throttle.Option{throttle.WithRefusalCache(time.Minute), throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.01, Burst: 1})},
			func(l *throttle.Limiter) error {
				for range 10 {
					if _, err := l.Allow(ctx, "hammer"); err != nil {
						return err
					}
				}
				return nil
			}, func(s throttle.LocalStats) bool { return s.Refused == 8 && s.Asked == 2 && s.Leased == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, _ := setup(t, tt.opts...)
			if s := l.LocalStats(); s != (throttle.LocalStats{}) {
				t.Fatalf("before any decision: %+v, want zeros", s)
			}
			if err := tt.calls(l); err != nil {
				t.Fatal(err)
			}
			if s := l.LocalStats(); !tt.check(s) {
				t.Errorf("LocalStats %+v", s)
			}
		})
	}
}

// Holds counts the tenants and upstreams paused now, and the longest pause
// left; a pause that ended, or was lifted by Reset, is not counted.
func TestHoldsCountsPausesInForce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := setup(t)
	if h, err := l.Holds(ctx); err != nil || h != (throttle.HoldSummary{}) {
		t.Fatalf("nothing held: %+v, %v", h, err)
	}
	for _, hold := range []struct {
		id string
		d  time.Duration
	}{{"acme", time.Hour}, {"globex", time.Minute}, {"lifted", time.Hour}, {throttle.Upstream("api"), 2 * time.Hour}} {
		if err := l.Hold(ctx, hold.id, hold.d); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Reset(ctx, "lifted"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Allow(ctx, "running"); err != nil { // state without a pause
		t.Fatal(err)
	}
	h, err := l.Holds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Tenants != 2 || h.Upstreams != 1 || h.TenantsLongest <= 59*time.Minute || h.TenantsLongest > time.Hour ||
		h.UpstreamsLongest <= 119*time.Minute || h.UpstreamsLongest > 2*time.Hour {
		t.Errorf("Holds %+v: want 2 tenants (longest about 1h) and 1 upstream (about 2h)", h)
	}
}
