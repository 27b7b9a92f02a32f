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

// decide.lua answers each decision with a record (see record.go) of
// replyLen numbers, or of its first replyShort alone when the others would
// say: not booked, decided by the first id, no quota, lease or slot.
const (
	replyLen   = 12
	replyShort = 5
)

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
	n := replyLen
	if len(b) == 8*replyShort {
		n = replyShort
	}
	v, err := readRecord(b, n)
	if err != nil {
		return reply{}, err
	}
	r := reply{
		allowed: v[0] == 1, reason: Reason(v[1]), remaining: v[2], waitUS: v[3], resetUS: v[4],
		level: 1, quotaRemaining: -1,
	}
	if n == replyLen {
		r.booked, r.level, r.quotaRemaining, r.quotaResetUS = v[5], v[6], v[7], v[8]
		r.leased, r.leasedAt, r.slots = v[9], v[10], v[11]
	}
	return r, nil
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
