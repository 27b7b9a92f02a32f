package asynqrequeue

import "fmt"

// Cause says why a task was put back to wait. Requeue records it on the
// task hash ("quotaq_cause"), and Waiting and WaitingByQueue count by it.
type Cause string

// The causes, as recorded and as the "cause" label of quotaq_waiting_tasks.
const (
	CauseRate        Cause = "rate"        // its turn at its tenant's own rate (a booked start)
	CauseUpstream    Cause = "upstream"    // its turn at an upstream's rate, which the tenant shares with others
	CauseQuota       Cause = "quota"       // a quota used up, until it resets
	CauseHold        Cause = "hold"        // a pause: its upstream said 429/503, or an operator held it
	CauseConcurrency Cause = "concurrency" // a free concurrency slot
	CauseOutage      Cause = "outage"      // the limiter's Redis could not be asked
	CauseInvalid     Cause = "invalid"     // the limiter refused the request as invalid (a bad policy)
)

// Causes lists every Cause, in the order ByCause shows them.
var Causes = []Cause{CauseRate, CauseUpstream, CauseQuota, CauseHold, CauseConcurrency, CauseOutage, CauseInvalid}

// ByCause counts put-back tasks by why they were put back.
type ByCause struct {
	Rate        int `json:"rate"`
	Upstream    int `json:"upstream"`
	Quota       int `json:"quota"`
	Hold        int `json:"hold"`
	Concurrency int `json:"concurrency"`
	Outage      int `json:"outage"`
	Invalid     int `json:"invalid"`
}

// Of returns the count of c, 0 for a cause not in Causes.
func (b ByCause) Of(c Cause) int {
	if p := b.field(c); p != nil {
		return *p
	}
	return 0
}

func (b *ByCause) field(c Cause) *int {
	switch c {
	case CauseRate:
		return &b.Rate
	case CauseUpstream:
		return &b.Upstream
	case CauseQuota:
		return &b.Quota
	case CauseHold:
		return &b.Hold
	case CauseConcurrency:
		return &b.Concurrency
	case CauseOutage:
		return &b.Outage
	case CauseInvalid:
		return &b.Invalid
	}
	return nil
}

func (b *ByCause) add(o ByCause) {
	for _, c := range Causes {
		*b.field(c) += o.Of(c)
	}
}

// validCause reports an error for a cause not in Causes ("" is allowed:
// none recorded).
func validCause(c Cause) error {
	if c == "" || new(ByCause).field(c) != nil {
		return nil
	}
	return fmt.Errorf("asynqrequeue: unknown cause %q (one of %v)", c, Causes)
}
