package throttle_test

import (
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// The sliding log takes out the cancelled caller's own entry, or when it
// cannot tell whose (CancelN), the oldest: never another caller's newer
// one, which would let a third call into a window of burst 2.
func TestSlidingWindowCancelTakesOutTheRightEntry(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	p := throttle.Policy{Rate: 1, Burst: 2} // a window of 2s
	for _, tc := range []struct {
		name  string
		p     throttle.Policy
		steps []cancelStep
	}{
		{"CancelNTakesTheOldest", p, []cancelStep{
			{do: "allow", n: 1, wantOK: true},
			{at: 1500 * ms, do: "allow", n: 1, wantOK: true},
			{at: 1500 * ms, do: "cancel", n: 1},
			{at: 1600 * ms, do: "allow", n: 1, wantOK: true},
			// the entries of 1.5s and 1.6s are still in the window
			{at: 2010 * ms, do: "allow", n: 1, wantOK: false},
		}},
		{"CancelTicketTakesItsOwn", p, []cancelStep{
			{do: "allow", n: 1, wantOK: true},
			{at: 1500 * ms, do: "reserve", n: 1, ticket: "b", keep: true, wantOK: true},
			{at: 1500 * ms, do: "ticket", n: 1, ticket: "b"},
			{at: 1600 * ms, do: "allow", n: 1, wantOK: true},
			{at: 1700 * ms, do: "allow", n: 1, wantOK: false},
			// the entry of 0s left: 1.6s's and one more
			{at: 2010 * ms, do: "allow", n: 1, wantOK: true},
		}},
		{"MadeUpTicketTakesNothing", p, []cancelStep{
			{do: "allow", n: 2, wantOK: true},
			{do: "ticket", n: 1, ticket: "made-up"},
			{do: "allow", n: 1, wantOK: false},
		}},
		// ten entries in one microsecond, "…:1" to "…:10"; one cancelled;
		// the next must not take the name of one still there, or the log
		// counts one entry for two calls and lets an eleventh in
		{"EntriesOfOneMicrosecondKeepTheirOwnNames", throttle.Policy{Rate: 1, Burst: 10}, []cancelStep{
			{do: "allow", n: 10, wantOK: true},
			{do: "cancel", n: 1},
			{do: "allow", n: 1, wantOK: true},
			{do: "allow", n: 1, wantOK: false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runCancelSteps(t, throttle.SlidingWindow, tc.p, tc.steps)
		})
	}
}
