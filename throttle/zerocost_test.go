package throttle_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// A cost of 0 is a peek, as in go-redis/redis_rate: AllowN(…, 0) and
// ReserveN(…, 0, …) consume nothing and report the state, and CancelN(…, 0)
// gives nothing back.
func TestZeroCostConsumesNothing(t *testing.T) {
	t.Parallel()
	configs := []struct {
		name string
		opts []throttle.Option
	}{
		{"Plain", nil},
		{"RefusalCache", []throttle.Option{throttle.WithRefusalCache(time.Minute)}},
		{"Batching", []throttle.Option{throttle.WithBatching(0, 0)}},
	}
	for _, algo := range throttle.Algorithms() {
		for _, cfg := range configs {
			t.Run(algo.String()+"/"+cfg.name, func(t *testing.T) {
				t.Parallel()
				opts := append([]throttle.Option{throttle.WithAlgorithm(algo),
					throttle.WithDefaultPolicy(throttle.Policy{Rate: 1, Burst: 3, Quota: 10})}, cfg.opts...)
				l, _ := setupClock(t, t0, opts...) // the clock stands still: nothing refills
				ctx := context.Background()
				for i := range 5 {
					r := mustAllowN(t, l, "acme", 0)
					if !r.Allowed || r.Remaining != 3 || r.QuotaRemaining != 10 {
						t.Fatalf("AllowN(0) #%d = %+v, want allowed with 3 left and quota 10", i, r)
					}
					res, err := l.ReserveN(ctx, "acme", 0, 0)
					if err != nil || !res.OK || res.Delay != 0 || res.Result.Remaining != 3 {
						t.Fatalf("ReserveN(0) #%d = %+v, %v; want OK now with 3 left", i, res, err)
					}
				}
				if r := mustAllowN(t, l, "acme", 3); !r.Allowed {
					t.Fatalf("AllowN(3) on a full bucket of 3 = %+v", r)
				}
				r := mustAllowN(t, l, "acme", 0)
				if !r.Allowed || r.Remaining != 0 || r.QuotaRemaining != 7 {
					t.Errorf("AllowN(0) on an empty bucket = %+v, want allowed (nothing to spend) with 0 left and quota 7", r)
				}
				for range 3 {
					if err := l.CancelN(ctx, "acme", 0); err != nil {
						t.Fatalf("CancelN(0): %v", err)
					}
				}
				if r := mustAllowN(t, l, "acme", 1); r.Allowed {
					t.Errorf("AllowN(1) after CancelN(0) x3 on an empty bucket = %+v, want refused: CancelN(0) gave a token back", r)
				}
			})
		}
	}
}

func TestNegativeCostIsInvalid(t *testing.T) {
	t.Parallel()
	l, _ := setupClock(t, t0)
	ctx := context.Background()
	if _, err := l.AllowN(ctx, "acme", -1); !errors.Is(err, throttle.ErrInvalidCost) {
		t.Errorf("AllowN(-1) = %v, want ErrInvalidCost", err)
	}
	if err := l.CancelN(ctx, "acme", -1); !errors.Is(err, throttle.ErrInvalidCost) {
		t.Errorf("CancelN(-1) = %v, want ErrInvalidCost", err)
	}
}
