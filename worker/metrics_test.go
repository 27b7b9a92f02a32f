package worker

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsTypeLabelIsCapped: however many task types a producer makes
// up, each metric has at most MaxTypes series of their own plus one
// "other", with or without per-tenant labels; MaxTypes(-1) lifts the cap.
func TestMetricsTypeLabelIsCapped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		opts      []MetricsOption
		types     int
		wantTypes int // series per metric
	}{
		{"Default", nil, DefaultMaxTypes + 500, DefaultMaxTypes + 1},
		{"Three", []MetricsOption{MaxTypes(3)}, 50, 4},
		{"FewerThanTheCap", []MetricsOption{MaxTypes(3)}, 2, 2},
		{"NoCap", []MetricsOption{MaxTypes(-1)}, 300, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			m, err := NewMetrics(reg, false, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			th := &Throttler{metrics: m, logger: slog.New(slog.DiscardHandler)}
			for i := range tt.types {
				j := &job{task: asynq.NewTask(fmt.Sprintf("made-up:%d", i), nil), tenant: "acme"}
				for range 2 { // a type seen again keeps its label
					th.countAllowed(j, "now")
					th.countError(j, "limiter")
					_ = th.archive(j, "invalid", fmt.Errorf("bad"))
				}
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() == "quotaq_build_info" || mf.GetName() == "quotaq_redis_errors_total" || mf.GetName() == "quotaq_worker_shadow_mode" {
					continue // no type label
				}
				if got := len(mf.GetMetric()); got != tt.wantTypes {
					t.Errorf("%s: %d series, want %d", mf.GetName(), got, tt.wantTypes)
				}
				if mf.GetName() != "quotaq_worker_allowed_total" || tt.types <= tt.wantTypes {
					continue
				}
				for _, s := range mf.GetMetric() {
					if s.GetLabel()[0].GetValue() == OtherType && s.GetCounter().GetValue() != float64(2*(tt.types-tt.wantTypes+1)) {
						t.Errorf("other: %v tasks, want %d", s.GetCounter().GetValue(), 2*(tt.types-tt.wantTypes+1))
					}
				}
			}
		})
	}
}
