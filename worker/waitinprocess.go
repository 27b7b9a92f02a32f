package worker

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// A task whose slot is near (it came back a little early: asynq's forwarder
// moves delayed tasks in whole seconds; or it came back late, and its turn
// among the late tasks is near) waits for it in the process, holding its
// worker, instead of being put back once more or starting with the others.
const (
	// DefaultWaitInProcess is the longest a task waits in the process for
	// a slot booked before it was dequeued (WithWaitInProcess): a second,
	// asynq's forwarder's unit.
	DefaultWaitInProcess = time.Second
	// defaultWaitSlots is how many tasks may wait in process at once, until
	// ServerConfig sets the server's concurrency.
	defaultWaitSlots = 8
)

// waitSlots counts the tasks waiting in process, up to max.
type waitSlots struct {
	n, max atomic.Int64
}

func (w *waitSlots) take() bool {
	if w.n.Add(1) > w.max.Load() {
		w.n.Add(-1)
		return false
	}
	return true
}

func (w *waitSlots) give() { w.n.Add(-1) }

// waitFor waits for the slot of a reservation, and reports whether it did
// (false: put the task back instead). It waits when a wait slot is free and
// the slot is due within WithWaitInProcess, counting what this dequeue
// waited already (waited), for a slot booked before the
// task was dequeued (it came early, or was given a turn among late tasks),
// or within the min delay, for one booked now (a put-back could not bring
// the task back sooner; a longer wait would hold the worker while other
// tasks could be booked).
func (t *Throttler) waitFor(ctx context.Context, taskType string, res throttle.Reservation, waited time.Duration) bool {
	limit, d := min(t.minDelay, t.waitIn), res.Delay
	if res.Booked {
		limit = t.waitIn
	}
	if waited+d > limit || !t.waiting.take() {
		return false
	}
	defer t.waiting.give()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
