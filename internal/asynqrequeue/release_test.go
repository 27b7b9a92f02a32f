package asynqrequeue_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/asynqrequeue"
	"github.com/quotaq/quotaq/internal/wait"
)

// Tasks parked for an hour (a quota used up) come back as soon as Release
// is called for their tenant, and only theirs; booked tasks and other
// tenants' stay where they are.
func TestReleaseBringsBackParkedTasks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	rq := asynqrequeue.New(b.rdb)

	reran := putBackOnFirstRun(t, b, func(id string, task *asynq.Task) asynqrequeue.Request {
		tenant := task.Headers()["tenant"]
		return asynqrequeue.Request{Queue: b.queue, ID: id, Due: time.Now().Add(time.Hour), Tenant: tenant, Parked: tenant != "booked"}
	})

	enqueue := func(tenant string, n int) []string {
		var ids []string
		for range n {
			info, err := b.client.Enqueue(asynq.NewTaskWithHeaders("job", nil, map[string]string{"tenant": tenant}), asynq.Queue(b.queue))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, info.ID)
		}
		return ids
	}
	acme, globex, booked := enqueue("acme", 5), enqueue("globex", 3), enqueue("booked", 2)
	wait.For(t, 10*time.Second, "every task parked", func() bool {
		q, err := b.inspector.GetQueueInfo(b.queue)
		return err == nil && q.Scheduled == 10
	})
	ran := reran

	for _, tc := range []struct {
		tenant string
		want   asynqrequeue.Waiting // (NextDue checked apart)
	}{
		// put back without a cause, as by an earlier worker: counted by
		// what they wait for
		{"acme", asynqrequeue.Waiting{ForOther: 5, ByCause: asynqrequeue.ByCause{Quota: 5}}},
		{"booked", asynqrequeue.Waiting{ForTurn: 2, ByCause: asynqrequeue.ByCause{Rate: 2}}},
	} {
		w, err := rq.Waiting(ctx, tc.tenant)
		due := w.NextDue
		w.NextDue = time.Time{}
		if err != nil || w != tc.want || due.Before(time.Now().Add(50*time.Minute)) {
			t.Fatalf("Waiting(%s): %+v next due %s, %v; want %+v, due in about an hour", tc.tenant, w, due, err, tc.want)
		}
	}
	moved, err := rq.Release(ctx, "acme")
	if err != nil || moved != 5 {
		t.Fatalf("Release(acme): %d, %v; want 5 moved", moved, err)
	}
	wait.For(t, 10*time.Second, "acme's tasks to run", func() bool { return ran(acme) == 5 })
	if n := ran(globex) + ran(booked); n != 0 {
		t.Fatalf("%d tasks of other tenants ran", n)
	}
	// released once: a second call finds nothing
	if moved, err = rq.Release(ctx, "acme"); err != nil || moved != 0 {
		t.Fatalf("Release(acme) again: %d, %v; want 0", moved, err)
	}
	// every tenant: globex's, not the booked ones (and, on this shared
	// server, other tests' parked tasks too)
	if moved, err = rq.Release(ctx); err != nil || moved < 3 {
		t.Fatalf("Release(): %d, %v; want at least globex's 3", moved, err)
	}
	wait.For(t, 10*time.Second, "globex's tasks to run", func() bool { return ran(globex) == 3 })
	if n := ran(booked); n != 0 {
		t.Fatalf("%d booked tasks ran, want 0 (they wait for their slot)", n)
	}
}

// Tasks parked at a booked slot move with it: Retime sets each to the due
// time given, in asynq's scheduled set too, and reports them for a Waker;
// tasks parked for nothing booked, and tenants not named, stay.
func TestRetimeMovesBookedTasksWithTheirSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	rq := asynqrequeue.New(b.rdb)
	b.startServer(t, func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		tenant := task.Headers()["tenant"]
		req := asynqrequeue.Request{Queue: b.queue, ID: id, Due: time.Now().Add(time.Minute), Tenant: tenant, Parked: task.Type() == "parked"}
		if _, err := rq.Requeue(ctx, req); err != nil {
			return err
		}
		return asynq.RevokeTask
	}, time.Hour)
	var booked []string
	for i := range 3 {
		typ := "booked"
		if i == 2 {
			typ = "parked"
		}
		info, err := b.client.Enqueue(asynq.NewTaskWithHeaders(typ, nil, map[string]string{"tenant": "retimed"}), asynq.Queue(b.queue))
		if err != nil {
			t.Fatal(err)
		}
		if typ == "booked" {
			booked = append(booked, info.ID)
		}
	}
	wait.For(t, 10*time.Second, "every task parked", func() bool {
		q, err := b.inspector.GetQueueInfo(b.queue)
		return err == nil && q.Scheduled == 3
	})

	later := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	asked := 0
	moved, err := rq.Retime(ctx, "retimed", func(queue string, ids []string) ([]time.Time, error) {
		if queue != b.queue {
			return make([]time.Time, len(ids)), nil // other tests' queues: leave
		}
		asked += len(ids)
		dues := make([]time.Time, len(ids))
		for i := range dues {
			dues[i] = later.Add(time.Duration(i) * time.Second)
		}
		return dues, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if asked != 2 || len(moved[b.queue]) != 2 {
		t.Fatalf("asked for %d due times, moved %v; want the 2 booked tasks", asked, moved)
	}
	for _, d := range moved[b.queue] {
		info, err := b.inspector.GetTaskInfo(b.queue, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		got := time.UnixMilli(d.DueMillis)
		if got.Before(later) || info.NextProcessAt.Before(got.Truncate(time.Second)) {
			t.Errorf("task %s moved to %s, scheduled at %s; want at least %s", d.ID, got, info.NextProcessAt, later)
		}
	}
	// nothing changed since: a second run moves nothing
	again, err := rq.Retime(ctx, "retimed", func(queue string, ids []string) ([]time.Time, error) {
		dues := make([]time.Time, len(ids))
		for i, id := range ids {
			for _, d := range moved[queue] {
				if d.ID == id {
					dues[i] = time.UnixMilli(d.DueMillis)
				}
			}
		}
		return dues, nil
	})
	if err != nil || len(again[b.queue]) != 0 {
		t.Fatalf("second Retime moved %v, %v; want nothing", again, err)
	}
}

// Tasks waiting for a slot of an id come back one per WakeOne, and a
// tenant's Release (a quota reset) does not bring them back.
func TestWakeOneBringsBackOneSlotWaiter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	rq := asynqrequeue.New(b.rdb)

	reran := putBackOnFirstRun(t, b, func(id string, _ *asynq.Task) asynqrequeue.Request {
		return asynqrequeue.Request{Queue: b.queue, ID: id, Due: time.Now().Add(time.Hour), Tenant: "slotted", Parked: true, WaitsForSlotOf: "slotted"}
	})
	for range 3 {
		if _, err := b.client.Enqueue(asynq.NewTask("job", nil), asynq.Queue(b.queue)); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, 10*time.Second, "every task waiting for a slot", func() bool {
		q, err := b.inspector.GetQueueInfo(b.queue)
		return err == nil && q.Scheduled == 3
	})
	ran := func() int { return reran(nil) }
	if moved, err := rq.Release(ctx, "slotted"); err != nil || moved != 0 {
		t.Fatalf("Release(slotted): %d, %v; want 0: tasks waiting for a slot are not parked for a quota", moved, err)
	}
	if w, err := rq.Waiting(ctx, "slotted"); err != nil || w.ForSlot != 3 || w.ForOther != 0 || w.ForTurn != 0 {
		t.Fatalf("Waiting: %+v, %v; want 3 for a slot", w, err)
	}
	for want := 1; want <= 3; want++ {
		if w, err := rq.Waiting(ctx, "slotted"); err != nil || w.ForSlot != 4-want {
			t.Fatalf("Waiting: %+v, %v; want %d for a slot", w, err, 4-want)
		}
		queue := b.queue
		if want == 2 {
			queue = "elsewhere" // a slot freed by a task of another queue
		}
		if ok, err := rq.WakeOne(ctx, queue, "slotted"); err != nil || !ok {
			t.Fatalf("WakeOne %d from queue %q: %v, %v; want one woken", want, queue, ok, err)
		}
		wait.For(t, 10*time.Second, "the woken task to run", func() bool { return ran() == want })
	}
	if w, err := rq.Waiting(ctx, "slotted"); err != nil || w.ForSlot != 0 {
		t.Fatalf("Waiting after all ran: %+v, %v; want none for a slot", w, err)
	}
	if ok, err := rq.WakeOne(ctx, b.queue, "slotted"); err != nil || ok {
		t.Fatalf("WakeOne with none waiting: %v, %v; want none", ok, err)
	}
}

// putBackOnFirstRun starts b's asynq server with a handler that, on a
// task's first run, puts it back as reqFor says (and revokes it), and on
// its second run succeeds. It returns how many of ids (every task when nil)
// have run the second time.
func putBackOnFirstRun(t *testing.T, b *testBundle, reqFor func(id string, task *asynq.Task) asynqrequeue.Request) func(ids []string) int {
	t.Helper()
	rq := asynqrequeue.New(b.rdb)
	var mu sync.Mutex
	runs := map[string]int{}
	b.startServer(t, func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		mu.Lock()
		runs[id]++
		n := runs[id]
		mu.Unlock()
		if n > 1 {
			return nil
		}
		if _, err := rq.Requeue(ctx, reqFor(id, task)); err != nil {
			return err
		}
		return asynq.RevokeTask
	}, time.Hour)
	return func(ids []string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for id, r := range runs {
			if r == 2 && (ids == nil || slices.Contains(ids, id)) {
				n++
			}
		}
		return n
	}
}
