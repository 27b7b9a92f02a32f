package worker

import (
	"testing"

	"github.com/quotaq/quotaq/internal/asynqrequeue"
)

// A task put back records why, from its throttled reason and the id that
// decided: a rate is the upstream's when an upstream id decided; an outage
// and an invalid policy are told apart.
func TestWaitCause(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		reason, by string
		want       asynqrequeue.Cause
	}{
		{"rate", "acme", asynqrequeue.CauseRate},
		{"rate", "upstream:api.example.com", asynqrequeue.CauseUpstream},
		{"quota", "upstream:api.example.com", asynqrequeue.CauseQuota},
		{"paused", "acme", asynqrequeue.CauseHold},
		{"upstream", "acme", asynqrequeue.CauseHold},
		{"concurrency", "upstream:api.example.com", asynqrequeue.CauseConcurrency},
		{"unavailable", "", asynqrequeue.CauseOutage},
		{"invalid", "", asynqrequeue.CauseInvalid},
	} {
		if got := waitCause(tc.reason, tc.by); got != tc.want {
			t.Errorf("waitCause(%q, %q) = %q, want %q", tc.reason, tc.by, got, tc.want)
		}
	}
}
