package httplimit

import (
	"net/http"
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

func TestSetHeaders(t *testing.T) {
	t.Parallel()
	base := throttle.Policy{Rate: 1, Burst: 10}
	daily := throttle.Policy{Rate: 5, Burst: 10, Quota: 1000, QuotaPeriod: 24 * time.Hour}
	tests := []struct {
		name  string
		p     throttle.Policy
		known bool
		r     throttle.Result
		want  map[string]string // "" means absent
	}{
		{
			name: "AllowedBasePolicy", p: base, known: true,
			r: throttle.Result{Allowed: true, Remaining: 7, ResetAfter: 8200 * time.Millisecond, QuotaRemaining: -1},
			want: map[string]string{
				"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "7", "X-RateLimit-Reset": "9",
				"RateLimit-Policy": `"default";q=10;w=10`, "RateLimit": `"default";r=7;t=9`,
				"Retry-After": "",
			},
		},
		{
			name: "RefusedByRateRetryAfterIsT", p: base, known: true,
			r: throttle.Result{Remaining: 0, RetryAfter: 2100 * time.Millisecond, ResetAfter: 9 * time.Second,
				QuotaRemaining: -1, Reason: throttle.ReasonRate},
			want: map[string]string{
				"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9",
				"RateLimit": `"default";r=0;t=3`, "Retry-After": "3",
			},
		},
		{
			name: "SubMillisecondWaitIsOneSecond", p: base, known: true,
			r:    throttle.Result{RetryAfter: time.Microsecond, ResetAfter: time.Microsecond, QuotaRemaining: -1, Reason: throttle.ReasonRate},
			want: map[string]string{"Retry-After": "1", "RateLimit": `"default";r=0;t=1`, "X-RateLimit-Reset": "1"},
		},
		{
			name: "QuotaClosestToRefusing", p: daily, known: true,
			r: throttle.Result{Allowed: true, Remaining: 9, ResetAfter: 200 * time.Millisecond,
				QuotaRemaining: 4, QuotaResetAfter: 3*time.Hour + time.Millisecond},
			want: map[string]string{
				"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "10801",
				"RateLimit-Policy": `"default";q=10;w=2, "quota";q=1000;w=86400`,
				"RateLimit":        `"default";r=9;t=1, "quota";r=4;t=10801`,
			},
		},
		{
			name: "RefusedByQuotaTIsRetryAfter", p: daily, known: true,
			r: throttle.Result{Remaining: 10, RetryAfter: 3 * time.Hour, QuotaRemaining: 0,
				QuotaResetAfter: 3 * time.Hour, Reason: throttle.ReasonQuota},
			want: map[string]string{
				"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "10800",
				"RateLimit": `"default";r=10;t=0, "quota";r=0;t=10800`, "Retry-After": "10800",
			},
		},
		{
			name: "QuotaUntilResetHasNoWindowNorT", p: throttle.Policy{Rate: 1, Burst: 10, Quota: 50}, known: true,
			r: throttle.Result{Allowed: true, Remaining: 9, ResetAfter: time.Second, QuotaRemaining: 3},
			want: map[string]string{
				"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "",
				"RateLimit-Policy": `"default";q=10;w=10, "quota";q=50`,
				"RateLimit":        `"default";r=9;t=1, "quota";r=3`,
			},
		},
		{
			name: "PolicyUnknownWritesOnlyTheDecision", p: throttle.Policy{}, known: false,
			r: throttle.Result{Allowed: true, Remaining: 3, ResetAfter: time.Second, QuotaRemaining: -1},
			want: map[string]string{
				"X-RateLimit-Limit": "", "RateLimit-Policy": "",
				"X-RateLimit-Remaining": "3", "RateLimit": `"default";r=3;t=1`,
			},
		},
		{
			name: "FastRateWindowIsOneSecond", p: throttle.PerSecond(100), known: true,
			r:    throttle.Result{Allowed: true, Remaining: 99, ResetAfter: 10 * time.Millisecond, QuotaRemaining: -1},
			want: map[string]string{"RateLimit-Policy": `"default";q=100;w=1`},
		},
		{
			name: "SlowRateWindowRoundsUp", p: throttle.Policy{Rate: 0.3, Burst: 1}, known: true,
			r:    throttle.Result{Allowed: true, QuotaRemaining: -1},
			want: map[string]string{"RateLimit-Policy": `"default";q=1;w=4`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			setHeaders(h, tt.p, tt.known, tt.r)
			for k, want := range tt.want {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}
