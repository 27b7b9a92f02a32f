package throttle_test

import (
	"context"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// FuzzHold holds a tenant for any duration (an upstream's Retry-After can
// say anything) on miniredis with its clock stopped: a positive hold always
// pauses the tenant, whose next decision is refused as paused for at least
// the hold, and other tenants are untouched; a hold of 0 or less is an
// error that changes nothing.
func FuzzHold(f *testing.F) {
	_, c := miniClient(f, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	var seq atomic.Int64
	for _, d := range []int64{1, int64(time.Microsecond), int64(time.Second), int64(46 * 24 * time.Hour), int64(292 * 365 * 24 * time.Hour),
		9223372036 * int64(time.Second), math.MaxInt64, math.MaxInt64 - 998, 0, -1, math.MinInt64} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, d int64) {
		ctx := context.Background()
		l := throttle.New(c, throttle.WithPrefix("fh"+string(rune('a'+seq.Add(1)%26))+time.Duration(seq.Load()).String()))
		err := l.Hold(ctx, "held", time.Duration(d))
		if d <= 0 {
			if err == nil {
				t.Fatalf("Hold(%d) accepted", d)
			}
		} else if err != nil {
			t.Fatalf("Hold(%s): %v", time.Duration(d), err)
		}
		r, err := l.Peek(ctx, "held")
		if err != nil {
			t.Fatal(err)
		}
		if d > 0 && (r.Allowed || r.Reason != throttle.ReasonPaused || r.RetryAfter < min(time.Duration(d), throttle.MaxHold)) {
			// (seed: holds near the largest Duration once wrapped around
			// and did not pause at all; Hold now cuts d to MaxHold)
			t.Fatalf("after Hold(%s): %+v; want refused as paused for at least the hold", time.Duration(d), r)
		}
		if d <= 0 && !r.Allowed {
			t.Fatalf("a refused Hold(%d) paused the tenant: %+v", d, r)
		}
		if o, err := l.Peek(ctx, "other"); err != nil || !o.Allowed {
			t.Fatalf("another tenant is paused: %+v %v", o, err)
		}
	})
}
