package worker

import (
	"github.com/quotaq/quotaq/internal/asynqrequeue"
	"github.com/quotaq/quotaq/throttle"
)

// waitCause says why a task put back with reason (its throttled_total
// reason) waits, as the task records it for the waiting counts (standing,
// quotaq_waiting_tasks): by is the id that decided (throttle.Result.Tenant),
// the tenant or one of its upstreams, whose rate it then shares with other
// tenants.
func waitCause(reason, by string) asynqrequeue.Cause {
	switch reason {
	case "quota":
		return asynqrequeue.CauseQuota
	case "paused", "upstream": // held, or its upstream has just said 429
		return asynqrequeue.CauseHold
	case "concurrency":
		return asynqrequeue.CauseConcurrency
	case "unavailable":
		return asynqrequeue.CauseOutage
	case "invalid":
		return asynqrequeue.CauseInvalid
	}
	if _, upstream := throttle.UpstreamName(by); upstream {
		return asynqrequeue.CauseUpstream
	}
	return asynqrequeue.CauseRate
}
