package scheduler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// adaptiveEntry is the YAML of an adaptive entry for tenant "up".
func adaptiveEntry(minRate, maxRate, step, factor float64) string {
	return fmt.Sprintf(`
entries:
  - name: up-adaptive
    cron: "*/30 * * * * *"
    action: adaptive
    tenant: up
    min_rate: %v
    max_rate: %v
    step: %v
    factor: %v
`, minRate, maxRate, step, factor)
}

// Adaptive mode against a fake upstream that answers 429 whenever the
// tenant's rate is above its capacity: the worker's 429 path calls Hold, and
// each step reads the hold count.
func TestAdaptiveConverges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                string
		capacity            float64 // the upstream 429s above this rate
		start               float64 // the tenant's rate before the first step
		min, max, step, fac float64
		// after the first 40 steps every rate is in [lo, hi]
		lo, hi float64
	}{
		{"ProbesAroundTheCapacity", 40, 10, 1, 100, 5, 0.5, 20, 45},
		{"GentleCut", 40, 10, 1, 100, 2, 0.8, 32, 42},
		{"CapacityAboveMaxStaysAtMax", 1000, 10, 1, 100, 5, 0.5, 100, 100},
		{"CapacityBelowMinStaysAtMin", 0.5, 10, 2, 100, 5, 0.5, 2, 2},
		{"StartAboveMaxIsClamped", 1000, 500, 1, 100, 5, 0.5, 100, 100},
		{"StartBelowMinIsClamped", 1000, 0.1, 3, 3, 1, 0.5, 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			b := setupHandlers(t)
			b.setPolicy(t, "up", throttle.Policy{Rate: tt.start, Burst: 1})
			s := mustParse(t, adaptiveEntry(tt.min, tt.max, tt.step, tt.fac))
			e := s.Entries[0]
			fire := mustTime(t, "2026-03-02T00:00:00Z")
			var rates []float64
			var said429 []bool
			for i := 0; i < 80; i++ {
				p, _, err := b.l.GetPolicy(ctx, "up")
				if err != nil {
					t.Fatal(err)
				}
				rates = append(rates, p.Rate)
				said429 = append(said429, p.Rate > tt.capacity)
				if p.Rate > tt.capacity { // the fake upstream says 429
					if err := b.l.Hold(ctx, "up", time.Millisecond); err != nil {
						t.Fatal(err)
					}
				}
				task, err := e.Task(fire)
				if err != nil {
					t.Fatal(err)
				}
				if err := b.h.adjust(ctx, task); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				fire = e.Schedule.Next(fire)
			}
			for i, r := range rates[1:] { // rates[0] is the start, before any step
				if r < tt.min || r > tt.max {
					t.Fatalf("step %d: rate %v outside [%v, %v]; rates %v", i, r, tt.min, tt.max, rates)
				}
			}
			for i, r := range rates[40:] {
				if r < tt.lo || r > tt.hi {
					t.Fatalf("step %d: rate %v outside [%v, %v] after convergence; rates %v", 40+i, r, tt.lo, tt.hi, rates)
				}
			}
			if tt.lo < tt.hi {
				// Probing: the upstream says 429 now and then, not on
				// every step, and not never.
				n := 0
				for _, s := range said429[40:] {
					if s {
						n++
					}
				}
				if n < 3 || n > 20 {
					t.Errorf("%d 429s in the last 40 steps, want some but at most half; rates %v", n, rates)
				}
			}
			// The policy keeps its other fields.
			if p, _, _ := b.l.GetPolicy(ctx, "up"); p.Burst != 1 {
				t.Errorf("burst = %d, want it kept at 1", p.Burst)
			}
		})
	}
}

// A retried step does not step twice, and an older step changes nothing.
func TestAdaptiveStepOncePerFiring(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupHandlers(t)
	b.setPolicy(t, "up", throttle.Policy{Rate: 10, Burst: 1})
	e := mustParse(t, adaptiveEntry(1, 100, 5, 0.5)).Entries[0]
	t0 := mustTime(t, "2026-03-02T00:00:00Z")
	rate := func() float64 {
		p, _, err := b.l.GetPolicy(ctx, "up")
		if err != nil {
			t.Fatal(err)
		}
		return p.Rate
	}
	step := func(fire time.Time) {
		task, err := e.Task(fire)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.h.adjust(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		fire time.Time
		want float64
		why  string
	}{
		{t0, 10, "first step: baseline"},
		{t0.Add(30 * time.Second), 15, "raise"},
		{t0.Add(30 * time.Second), 15, "the same firing again (a retried task)"},
		{t0.Add(60 * time.Second), 20, "raise"},
		{t0.Add(30 * time.Second), 20, "an older firing, late"},
		{t0.Add(90 * time.Second), 25, "raise"},
	}
	for _, s := range steps {
		step(s.fire)
		if got := rate(); got != s.want {
			t.Fatalf("%s at %s: rate %v, want %v", s.why, s.fire.Format(time.TimeOnly), got, s.want)
		}
	}
	// The state is in Redis, under the handlers' prefix.
	if n, err := b.rdb.Exists(ctx, b.prefix+":adaptive:up").Result(); err != nil || n != 1 {
		t.Errorf("adaptive state key: exists=%d, %v", n, err)
	}
}
