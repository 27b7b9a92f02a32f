package asynqrequeue

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed requeue.lua
	requeueLua    string
	requeueScript = redis.NewScript(requeueLua)

	//go:embed move.lua
	moveLua string

	//go:embed wake.lua
	wakeLua    string
	wakeScript = redis.NewScript(moveLua + wakeLua)
)

var (
	// ErrNotActive is returned by Requeue when the task is no longer active
	// and leased in its queue: its lease expired and asynq's recoverer took
	// it back, or it was never running. Nothing was written.
	ErrNotActive = errors.New("asynqrequeue: task is not active")

	// ErrMaxWait is returned by Requeue when the task's total wait would pass
	// the cap given in Request.MaxWait. Nothing was written.
	ErrMaxWait = errors.New("asynqrequeue: total wait would pass the cap")
)

// Requeuer moves running asynq tasks back to their queue's scheduled set.
// It is safe for concurrent use.
type Requeuer struct {
	rdb redis.UniversalClient
}

// New returns a Requeuer on asynq's Redis (the one its server dequeues from).
func New(rdb redis.UniversalClient) *Requeuer {
	return &Requeuer{rdb: rdb}
}

// Request says which running task to move and until when.
type Request struct {
	Queue string    // the task's queue (asynq.GetQueueName)
	ID    string    // the task's id (asynq.GetTaskID)
	Due   time.Time // when the task may run again
	// MaxWait caps the task's total wait over all its re-queues, this one
	// included, counted as the sum of Due minus the time of each Requeue.
	// 0: no cap.
	MaxWait time.Duration
	// Tenant is the task's tenant. With Parked, the task is recorded as
	// waiting for nothing booked (a quota, a pause, an outage), so that
	// Release can bring it back when that ends early; without, as waiting
	// for a booked slot, so that Retime can move it with its slot.
	Tenant string
	Parked bool
	// WaitsForSlotOf is the limiter id (a tenant, an upstream) whose
	// concurrency slots are all taken: the task is recorded as waiting for
	// one, so that WakeOne brings it back when one frees. It overrides
	// Parked.
	WaitsForSlotOf string
	// Cause is why the task waits, recorded on the task for Waiting and
	// WaitingByQueue to count by; "": not recorded (a task put back by a
	// worker that did not record it is counted as CauseRate when it waits
	// for a booked slot, CauseQuota when for nothing booked, and
	// CauseConcurrency when for a slot).
	Cause Cause
}

// Outcome describes a re-queue, done or refused with ErrMaxWait.
type Outcome struct {
	// Throttles is how many times the task has been re-queued, this one
	// included.
	Throttles int64
	// Waited is the task's total wait over all its re-queues, this one
	// included.
	Waited time.Duration
	// DueMillis is the due time as recorded (unix ms); Wake needs it.
	DueMillis int64
}

// Requeue moves the task req.ID, which the caller's asynq worker is
// running, from the active list to the scheduled set at req.Due, atomically.
// The caller must then return asynq.RevokeTask from its handler so that
// asynq leaves the task where it now is. The task's message (and so its id,
// type, payload, headers, options and retry count) is not changed.
//
// It returns ErrNotActive if the task is not active and leased, and
// ErrMaxWait (with the totals it would have had) if its total wait would
// pass req.MaxWait; in both cases nothing is written.
func (r *Requeuer) Requeue(ctx context.Context, req Request) (Outcome, error) {
	if req.Queue == "" || req.ID == "" {
		return Outcome{}, fmt.Errorf("asynqrequeue: requeue needs a queue and a task id, got queue %q id %q", req.Queue, req.ID)
	}
	if err := validCause(req.Cause); err != nil {
		return Outcome{}, err
	}
	now := time.Now()
	due := (req.Due.UnixNano() + 999_999) / 1_000_000 // ms, rounded up: never before Due
	wait := due - now.UnixMilli()
	if wait < 0 {
		wait = 0
	}
	score := (due + 999) / 1000 // whole seconds, rounded up: never before Due
	keys := []string{taskKey(req.Queue, req.ID), activeKey(req.Queue), leaseKey(req.Queue), scheduledKey(req.Queue),
		parkedKey(req.Queue, req.Tenant), bookedKey(req.Queue, req.Tenant)}
	parked := ""
	switch {
	case req.WaitsForSlotOf != "":
		keys[4], parked = slotWaitKey(req.Queue, req.WaitsForSlotOf), "1"
	case req.Tenant != "" && req.Parked:
		parked = "1"
	case req.Tenant != "":
		parked = "0"
	}
	v, err := requeueScript.Run(ctx, r.rdb, keys, req.ID, due, score, wait, req.MaxWait.Milliseconds(), parked, string(req.Cause)).Int64Slice()
	if err != nil {
		return Outcome{}, fmt.Errorf("asynqrequeue: requeue task %s of queue %q: %w", req.ID, req.Queue, err)
	}
	if len(v) != 3 {
		return Outcome{}, fmt.Errorf("asynqrequeue: unexpected reply %v from requeue script", v)
	}
	out := Outcome{Throttles: v[1], Waited: time.Duration(v[2]) * time.Millisecond, DueMillis: due}
	switch v[0] {
	case 1:
		return out, nil
	case 0:
		return Outcome{}, fmt.Errorf("%w: task %s of queue %q", ErrNotActive, req.ID, req.Queue)
	case -1:
		return out, fmt.Errorf("%w: task %s of queue %q would have waited %s in all, the cap is %s",
			ErrMaxWait, req.ID, req.Queue, out.Waited, req.MaxWait)
	}
	return Outcome{}, fmt.Errorf("asynqrequeue: unexpected reply %v from requeue script", v)
}

// Due names a re-queued task and its due time, as Outcome.DueMillis.
type Due struct {
	ID        string
	DueMillis int64
}

// Wake moves the given re-queued tasks of queue to the head of its pending
// list, so that asynq runs them next, and returns how many it moved. A task
// that is no longer scheduled with that due time (run by hand, deleted,
// already forwarded by asynq, or re-queued again) is left alone.
func (r *Requeuer) Wake(ctx context.Context, queue string, tasks []Due) (int, error) {
	if len(tasks) == 0 {
		return 0, nil
	}
	args := make([]any, 0, 2+2*len(tasks))
	args = append(args, taskKeyPrefix(queue), time.Now().UnixNano())
	for _, t := range tasks {
		args = append(args, t.ID, strconv.FormatInt(t.DueMillis, 10))
	}
	n, err := wakeScript.Run(ctx, r.rdb, []string{scheduledKey(queue), pendingKey(queue)}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("asynqrequeue: wake %d tasks of queue %q: %w", len(tasks), queue, err)
	}
	return n, nil
}
