package worker_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/quotaq/quotaq/worker"
)

func TestParseBudget(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		h         map[string]string
		remaining int64
		reset     time.Duration
		ok        bool
	}{
		{"Structured", map[string]string{"RateLimit": `"default";r=0;t=3`}, 0, 3 * time.Second, true},
		{"StructuredFewestLeft", map[string]string{"RateLimit": `"default";r=7;t=9, "quota";r=2;t=3600`}, 2, time.Hour, true},
		{"Older", map[string]string{"RateLimit": `limit=10, remaining=0, reset=4`}, 0, 4 * time.Second, true},
		{"XRateLimitSeconds", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "12"}, 0, 12 * time.Second, true},
		{"XRateLimitUnixTime", map[string]string{"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "1796040030"}, 3, 30 * time.Second, true},
		{"XRateLimitPast", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1796039000"}, 0, 0, true},
		{"RemainingAlone", map[string]string{"X-RateLimit-Remaining": "0"}, 0, 0, false},
		{"Garbage", map[string]string{"RateLimit": `;;;=,`, "X-RateLimit-Remaining": "x", "X-RateLimit-Reset": "-1"}, 0, 0, false},
		{"Negative", map[string]string{"X-RateLimit-Remaining": "-1", "X-RateLimit-Reset": "5"}, 0, 0, false},
		{"Huge", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "999999999"}, 0, 999999999 * time.Second, true},
		{"None", nil, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for k, v := range tt.h {
				h.Set(k, v)
			}
			r, d, ok := worker.ParseBudget(h, now)
			if r != tt.remaining || d != tt.reset || ok != tt.ok {
				t.Fatalf("ParseBudget(%v) = %d, %s, %v; want %d, %s, %v", tt.h, r, d, ok, tt.remaining, tt.reset, tt.ok)
			}
		})
	}
}
