package throttle

import (
	"fmt"
	"time"
)

// mode is what a decision does; decide.lua reads it as each decision's
// first argument.
type mode string

const (
	modeAllow   mode = "allow"   // spend now, or refuse
	modeReserve mode = "reserve" // spend now, or book for later
	modePeek    mode = "peek"    // report, spend nothing
	modeCancel  mode = "cancel"  // give back
)

// replyLen is how many numbers decide.lua answers per decision, in one
// record (see record.go).
const replyLen = 12

// reply is decide.lua's answer to one decision; see lua/decide.lua.
type reply struct {
	allowed        bool
	booked         int64 // 1: booked now, due later; 2: booked under the ticket before
	reason         Reason
	remaining      int64
	waitUS         int64 // -1: never, or the quota's reset is unknown
	resetUS        int64
	quotaRemaining int64 // -1: no quota
	quotaResetUS   int64
	level          int64 // 1-based: the id that decided
	leased         int64 // tokens leased besides the decision's
	leasedAt       int64 // when, Redis µs
	slots          int64 // ids on which the call now holds a slot
}

// decodeReply reads decide.lua's record for one decision.
func decodeReply(b []byte) (reply, error) {
	v, err := readRecord(b, replyLen)
	if err != nil {
		return reply{}, err
	}
	return reply{
		allowed: v[0] == 1, booked: v[1], reason: Reason(v[2]), remaining: v[3],
		waitUS: v[4], resetUS: v[5], quotaRemaining: v[6], quotaResetUS: v[7],
		level: v[8], leased: v[9], leasedAt: v[10], slots: v[11],
	}, nil
}

// decision is what a Limiter makes of a reply.
type decision struct {
	Result
	booked bool
	before bool // booked under the ticket before this call
}

// decision turns r, the reply to a decision on ids, into a Result.
func (l *Limiter) decision(r reply, ids []string) (decision, error) {
	if r.level < 1 || int(r.level) > len(ids) {
		return decision{}, fmt.Errorf("throttle: unexpected script reply %+v", r)
	}
	us := func(x int64) time.Duration { return time.Duration(x) * time.Microsecond }
	res := Result{
		Allowed:         r.allowed,
		Remaining:       r.remaining,
		RetryAfter:      us(r.waitUS),
		ResetAfter:      us(r.resetUS),
		QuotaRemaining:  r.quotaRemaining,
		QuotaResetAfter: us(r.quotaResetUS),
		Tenant:          ids[r.level-1],
		Reason:          r.reason,
		HoldsSlot:       r.slots > 0,
	}
	if r.waitUS == -1 {
		res.RetryAfter = -1
		if r.reason == ReasonQuota {
			res.RetryAfter = l.quotaRetry
		}
	}
	return decision{Result: res, booked: r.booked >= 1, before: r.booked == 2}, nil
}
