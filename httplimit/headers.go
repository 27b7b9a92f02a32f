package httplimit

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// Names of the IETF draft's policy items (RateLimit-Policy and RateLimit).
const (
	// RatePolicyName names the rate limit (Burst requests per Burst/Rate
	// seconds).
	RatePolicyName = "default"
	// QuotaPolicyName names the period quota, for policies with one.
	QuotaPolicyName = "quota"
)

// setHeaders writes the client's standing after decision r under policy p.
// known is false when the policy could not be read: then only what the
// decision itself says is written.
func setHeaders(h http.Header, p throttle.Policy, known bool, r throttle.Result) {
	hasQuota := r.QuotaRemaining >= 0

	// X-RateLimit-*: the limit closest to refusing, the rate window or,
	// when less of it is left, the quota.
	limit, remaining, reset := p.Burst, r.Remaining, seconds(r.ResetAfter)
	if hasQuota && r.QuotaRemaining < r.Remaining {
		limit, remaining, reset = p.Quota, r.QuotaRemaining, seconds(r.QuotaResetAfter)
		if r.QuotaResetAfter <= 0 {
			reset = -1
		}
	}
	if known {
		h.Set("X-RateLimit-Limit", strconv.FormatInt(limit, 10))
	}
	h.Set("X-RateLimit-Remaining", strconv.FormatInt(remaining, 10))
	if reset >= 0 {
		h.Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
	}

	// RateLimit-Policy: "default";q=10;w=10, "quota";q=1000;w=86400
	if known {
		pol := policyItem(RatePolicyName, p.Burst, window(p))
		if p.Quota > 0 {
			w := int64(0)
			if p.QuotaPeriod > 0 {
				w = seconds(p.QuotaPeriod)
			}
			pol += ", " + policyItem(QuotaPolicyName, p.Quota, w)
		}
		h.Set("RateLimit-Policy", pol)
	}

	// RateLimit: "default";r=7;t=9 — t is when the whole limit is back,
	// or on a refusal when the next request is admitted (Retry-After).
	retry := retryAfter(r)
	rateT := seconds(r.ResetAfter)
	if !r.Allowed && r.Reason != throttle.ReasonQuota && retry > 0 {
		rateT = retry
	}
	lim := limitItem(RatePolicyName, r.Remaining, rateT)
	if hasQuota {
		quotaT := int64(-1)
		if r.QuotaResetAfter > 0 {
			quotaT = seconds(r.QuotaResetAfter)
		}
		if !r.Allowed && r.Reason == throttle.ReasonQuota && retry > 0 {
			quotaT = retry
		}
		lim += ", " + limitItem(QuotaPolicyName, r.QuotaRemaining, quotaT)
	}
	h.Set("RateLimit", lim)

	if !r.Allowed && retry > 0 {
		h.Set("Retry-After", strconv.FormatInt(retry, 10))
	}
}

// policyItem renders one RateLimit-Policy item; w <= 0 leaves the window out.
func policyItem(name string, q, w int64) string {
	s := strconv.Quote(name) + ";q=" + strconv.FormatInt(q, 10)
	if w > 0 {
		s += ";w=" + strconv.FormatInt(w, 10)
	}
	return s
}

// limitItem renders one RateLimit item; t < 0 leaves the reset out.
func limitItem(name string, r, t int64) string {
	var b strings.Builder
	b.WriteString(strconv.Quote(name))
	b.WriteString(";r=")
	b.WriteString(strconv.FormatInt(max(r, 0), 10))
	if t >= 0 {
		b.WriteString(";t=")
		b.WriteString(strconv.FormatInt(t, 10))
	}
	return b.String()
}

// window is the policy's rate window in whole seconds: the time to earn a
// full burst, Burst/Rate, rounded up, at least 1 (the draft has no
// sub-second windows).
func window(p throttle.Policy) int64 {
	if p.Rate <= 0 {
		return 0
	}
	w := int64(math.Ceil(float64(p.Burst)/p.Rate - 1e-9))
	return max(w, 1)
}

// retryAfter is the Retry-After of a refusal in whole seconds, rounded up
// and at least 1; 0 when there is none to give (allowed, or never).
func retryAfter(r throttle.Result) int64 {
	if r.Allowed || r.RetryAfter <= 0 {
		return 0
	}
	return max(seconds(r.RetryAfter), 1)
}

// seconds rounds d up to whole seconds; 0 for d <= 0.
func seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
