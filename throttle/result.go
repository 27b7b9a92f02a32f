package throttle

import (
	"fmt"
	"time"
)

// Reason says why a decision refused.
type Reason int

const (
	ReasonNone        Reason = iota // admitted
	ReasonRate                      // the bucket has too few tokens now
	ReasonQuota                     // the period quota is used up
	ReasonPaused                    // the id is paused by Hold (its upstream said stop)
	ReasonCost                      // n is above the burst: it can never be admitted
	ReasonConcurrency               // every slot is held by a call in flight (Policy.Concurrency)
)

func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "none"
	case ReasonRate:
		return "rate"
	case ReasonQuota:
		return "quota"
	case ReasonPaused:
		return "paused"
	case ReasonCost:
		return "cost above burst"
	case ReasonConcurrency:
		return "concurrency"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Result is a decision and the state of the bucket that made it: the id that
// refused, or when all admitted, the one with the fewest tokens left.
type Result struct {
	// Allowed reports whether the n tokens were granted now.
	Allowed bool
	// Remaining is the number of tokens left in the bucket, after this
	// decision consumed its tokens if it did.
	Remaining int64
	// RetryAfter is, when refused, how long until n tokens (and the quota)
	// are there, rounded up to the microsecond; -1 when they never will be
	// (n above the burst). 0 when allowed.
	//
	// go-redis/redis_rate's Result.RetryAfter differs at both ends: it is
	// -1 when allowed (here 0), and for n above the burst it is a duration
	// (here -1: no wait makes such a cost admissible, see ReasonCost).
	// Code ported from redis_rate should test Allowed rather than
	// RetryAfter < 0.
	RetryAfter time.Duration
	// ResetAfter is how long until the bucket is full again.
	ResetAfter time.Duration
	// QuotaRemaining is what is left of the period quota; -1 when the
	// policy has none.
	QuotaRemaining int64
	// QuotaResetAfter is how long until the quota period ends; 0 when there
	// is no quota or its end is not known.
	QuotaResetAfter time.Duration
	// Reason says why the decision refused; ReasonNone when it admitted.
	Reason Reason
	// HoldsSlot says the call now holds a slot under Request.Slot on at
	// least one id (a policy with Concurrency): renew it while the call runs
	// (Limiter.RenewSlot) and release it when it returns (ReleaseSlot).
	HoldsSlot bool
	// Tenant is the id the Result describes (useful with AllowMulti).
	Tenant string
}

func (r Result) String() string {
	if r.Allowed {
		return fmt.Sprintf("allowed %s (remaining %d)", r.Tenant, r.Remaining)
	}
	return fmt.Sprintf("refused %s: %s, retry after %s", r.Tenant, r.Reason, r.RetryAfter)
}

// Reservation is the answer of ReserveN: tokens granted now, or booked for
// later, or nothing.
type Reservation struct {
	// OK reports whether the tokens were granted, now or after Delay. When
	// false nothing was consumed: the wait would pass maxWait, the quota is
	// used up, the tenant is paused with an algorithm that cannot book, or
	// n is above the burst. Result says which.
	OK bool
	// Delay is how long until the tokens are due: 0 when they are granted
	// now. When OK is false, it is how long the caller may wait before it
	// asks again (Result.RetryAfter).
	Delay time.Duration
	// Booked reports that Delay is the wait for tokens booked under the
	// request's ticket before this call (the caller came before its slot,
	// or came late and was given a turn among the calls that start), not
	// for tokens booked by this call.
	Booked bool
	// Result describes the decision.
	Result Result
}
