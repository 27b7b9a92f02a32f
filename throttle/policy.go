package throttle

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Policy is a tenant's limit: a bucket of Burst tokens refilled at Rate
// tokens per second, optionally a quota of Quota tokens per period, and
// optionally at most Concurrency calls in flight at once (see Request.Slot).
//
// With QuotaPeriod > 0 the quota periods are aligned to UTC: 24h periods
// start at midnight UTC. With QuotaPeriod == 0 and Quota > 0 the period only
// ends when the quota is reset (Limiter.ResetQuota, which the scheduler calls
// on its cron schedule: monthly, at midnight in a time zone, ...).
type Policy struct {
	Rate        float64       // tokens per second, MinRate to MaxRate
	Burst       int64         // bucket capacity in tokens, >= 1
	Quota       int64         // tokens per quota period; 0: no quota
	QuotaPeriod time.Duration // length of an aligned quota period; 0: until reset
	Concurrency int64         // calls in flight at once, each holding a slot; 0: no limit
}

// PerSecond returns a policy of n tokens per second with a burst of n.
func PerSecond(n int64) Policy { return Policy{Rate: float64(n), Burst: n} }

// PerMinute returns a policy of n tokens per minute with a burst of n.
func PerMinute(n int64) Policy { return Policy{Rate: float64(n) / 60, Burst: n} }

// maxFill bounds Burst/Rate: the time to fill an empty bucket. It keeps the
// scripts' integer nanoseconds below 2^53, where Lua's doubles are exact.
const maxFill = 10 * 24 * time.Hour

// The bounds of Policy.Rate, in tokens per second. The scripts count time in
// whole nanoseconds per token: at MaxRate a token takes 1ns, at MinRate
// (one token per 10 days, with a burst of 1) it takes the longest a bucket
// may take to refill.
const (
	MinRate = float64(time.Second) / float64(maxFill) // ≈ 1.157e-06
	MaxRate = 1e9
)

// maxCount is the largest quota or concurrency limit: the scripts count in
// doubles, exact up to 2^53.
const maxCount = 1 << 53

// Validate reports whether p can be enforced, and if not, which field is
// wrong and why.
func (p Policy) Validate() error {
	if err := ValidateRate(p.Rate); err != nil {
		return err
	}
	switch {
	case p.Burst < 1:
		return fmt.Errorf("%w: burst %d must be at least 1", ErrInvalidPolicy, p.Burst)
	case p.Quota < 0:
		return fmt.Errorf("%w: quota %d must be 0 (none) or more", ErrInvalidPolicy, p.Quota)
	case p.QuotaPeriod < 0:
		return fmt.Errorf("%w: quota period %s must be 0 (until reset) or more", ErrInvalidPolicy, p.QuotaPeriod)
	case p.QuotaPeriod > 0 && p.QuotaPeriod < time.Millisecond:
		return fmt.Errorf("%w: quota period %s is below 1ms", ErrInvalidPolicy, p.QuotaPeriod)
	case p.QuotaPeriod > 0 && p.Quota == 0:
		return fmt.Errorf("%w: quota period %s given without a quota", ErrInvalidPolicy, p.QuotaPeriod)
	case p.Concurrency < 0:
		return fmt.Errorf("%w: concurrency %d must be 0 (no limit) or more", ErrInvalidPolicy, p.Concurrency)
	case p.Quota > maxCount:
		return fmt.Errorf("%w: quota %d is above %d (for no quota, give 0)", ErrInvalidPolicy, p.Quota, int64(maxCount))
	case p.Concurrency > maxCount:
		return fmt.Errorf("%w: concurrency %d is above %d (for no limit, give 0)", ErrInvalidPolicy, p.Concurrency, int64(maxCount))
	}
	if iv := p.interval(); p.Burst > int64(maxFill)/iv {
		hours := float64(iv) * float64(p.Burst) / float64(time.Hour)
		return fmt.Errorf("%w: burst %d at rate %v takes %.0fh to refill, the most is %s (raise the rate or lower the burst)",
			ErrInvalidPolicy, p.Burst, p.Rate, hours, maxFill)
	}
	return nil
}

// ValidateRate reports whether rate, in tokens per second, is a Policy.Rate
// that can be enforced: a number from MinRate to MaxRate.
func ValidateRate(rate float64) error {
	switch {
	case math.IsNaN(rate) || math.IsInf(rate, 0):
		return fmt.Errorf("%w: rate %v is not a number of tokens per second", ErrInvalidPolicy, rate)
	case rate < MinRate:
		// checked before interval(): 1e9/rate of a tiny rate does not fit
		// an int64
		return fmt.Errorf("%w: rate %v is below the least, %v tokens per second (one token per %s); raise the rate",
			ErrInvalidPolicy, rate, MinRate, maxFill)
	case rate > MaxRate:
		return fmt.Errorf("%w: rate %v is above the most, %v tokens per second (one token per ns); lower the rate",
			ErrInvalidPolicy, rate, MaxRate)
	}
	return nil
}

// interval is the time per token in nanoseconds, rounded to the nearest one.
// Validate keeps it between 1 and maxFill; it is only exact for a valid p.
func (p Policy) interval() int64 {
	iv := int64(math.Round(1e9 / p.Rate))
	if iv < 1 {
		iv = 1
	}
	return iv
}

func (p Policy) String() string {
	s := strconv.FormatFloat(p.Rate, 'f', -1, 64) + "/s burst " + strconv.FormatInt(p.Burst, 10)
	if p.Quota > 0 {
		s += " quota " + strconv.FormatInt(p.Quota, 10)
		if p.QuotaPeriod > 0 {
			s += " per " + p.QuotaPeriod.String()
		} else {
			s += " until reset"
		}
	}
	if p.Concurrency > 0 {
		s += " concurrency " + strconv.FormatInt(p.Concurrency, 10)
	}
	return s
}

// args renders p as decide.lua's default policy: interval, burst, quota,
// quota period, concurrency.
func (p Policy) args() []any {
	return []any{p.interval(), p.Burst, p.Quota, p.QuotaPeriod.Microseconds(), p.Concurrency}
}

// fields renders p as the policy hash the scripts read.
func (p Policy) fields() []any {
	return []any{
		"rate", strconv.FormatFloat(p.Rate, 'g', -1, 64),
		"t", p.interval(), "b", p.Burst, "q", p.Quota, "qp", p.QuotaPeriod.Microseconds(), "c", p.Concurrency,
	}
}

// policyFromFields parses a policy hash.
func policyFromFields(m map[string]string) (Policy, error) {
	var p Policy
	var err error
	num := func(k string) int64 {
		if err != nil {
			return 0
		}
		v, e := strconv.ParseInt(m[k], 10, 64)
		if e != nil {
			err = fmt.Errorf("throttle: stored policy field %q=%q: %w", k, m[k], e)
		}
		return v
	}
	p.Rate, err = strconv.ParseFloat(m["rate"], 64)
	if err != nil {
		return p, fmt.Errorf("throttle: stored policy field rate=%q: %w", m["rate"], err)
	}
	p.Burst = num("b")
	p.Quota = num("q")
	p.QuotaPeriod = time.Duration(num("qp")) * time.Microsecond
	if _, ok := m["c"]; ok { // (earlier versions wrote none)
		p.Concurrency = num("c")
	}
	return p, err
}
