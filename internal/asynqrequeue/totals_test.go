package asynqrequeue_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/asynqrequeue"
	"github.com/quotaq/quotaq/internal/wait"
)

// WaitingByQueue adds up every tenant's put-back tasks of each queue asked
// for, by what they wait for; a queue with none is there with zeros, and a
// task that left its index (released) is no longer counted.
func TestWaitingByQueueAddsUpTenants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	rq := asynqrequeue.New(b.rdb)
	putBackOnFirstRun(t, b, func(id string, task *asynq.Task) asynqrequeue.Request {
		req := asynqrequeue.Request{Queue: b.queue, ID: id, Due: time.Now().Add(time.Hour), Tenant: task.Headers()["tenant"]}
		switch task.Headers()["wait"] {
		case "parked":
			req.Parked = true
		case "slot":
			req.WaitsForSlotOf = "upstream:api-" + b.queue
		}
		return req
	})
	for _, e := range []struct {
		tenant, wait string
		n            int
	}{{"acme", "parked", 3}, {"globex", "parked", 2}, {"acme", "booked", 4}, {"initech", "slot", 1}} {
		for range e.n {
			// tenant names of this test's own: Waiting looks in every queue
			tenant := e.tenant + "-" + b.queue
			if _, err := b.client.Enqueue(asynq.NewTaskWithHeaders("job", nil, map[string]string{"tenant": tenant, "wait": e.wait}), asynq.Queue(b.queue)); err != nil {
				t.Fatal(err)
			}
		}
	}
	wait.For(t, 10*time.Second, "every task put back", func() bool {
		q, err := b.inspector.GetQueueInfo(b.queue)
		return err == nil && q.Scheduled == 10
	})
	idle := b.queue + "-idle"
	check := func(want asynqrequeue.Waiting) {
		t.Helper()
		got, err := rq.WaitingByQueue(ctx, []string{b.queue, idle})
		if err != nil {
			t.Fatal(err)
		}
		w := got[b.queue]
		due := w.NextDue
		w.NextDue = time.Time{}
		if w != want || due.Before(time.Now().Add(50*time.Minute)) {
			t.Errorf("queue: %+v next due %s, want %+v due in about an hour", w, due, want)
		}
		if w, ok := got[idle]; !ok || w != (asynqrequeue.Waiting{}) {
			t.Errorf("idle queue: %+v (there: %v), want zeros", w, ok)
		}
	}
	check(asynqrequeue.Waiting{ForTurn: 4, ForOther: 5, ForSlot: 1, ByCause: asynqrequeue.ByCause{Rate: 4, Quota: 5, Concurrency: 1}})
	if n, err := rq.Release(ctx, "acme-"+b.queue); err != nil || n != 3 {
		t.Fatalf("Release: %d, %v", n, err)
	}
	check(asynqrequeue.Waiting{ForTurn: 4, ForOther: 2, ForSlot: 1, ByCause: asynqrequeue.ByCause{Rate: 4, Quota: 2, Concurrency: 1}})
}

// Waiting and WaitingByQueue count put-back tasks by the cause Requeue
// recorded; a task put back without one (by an earlier worker) counts as
// what its index says: booked as rate, parked as quota, a slot as
// concurrency.
func TestWaitingCountsByCause(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	rq := asynqrequeue.New(b.rdb)
	tenant := "acme-" + b.queue
	reqFor := func(id string, task *asynq.Task) asynqrequeue.Request {
		req := asynqrequeue.Request{Queue: b.queue, ID: id, Due: time.Now().Add(time.Hour), Tenant: tenant,
			Cause: asynqrequeue.Cause(task.Headers()["cause"])}
		switch task.Headers()["wait"] {
		case "parked":
			req.Parked = true
		case "slot":
			req.WaitsForSlotOf = tenant
		}
		return req
	}
	putBackOnFirstRun(t, b, reqFor)
	for _, e := range []struct {
		wait, cause string
		n           int
	}{
		{"booked", "rate", 5}, {"booked", "upstream", 4}, {"booked", "hold", 1}, {"booked", "", 2},
		{"parked", "quota", 3}, {"parked", "hold", 2}, {"parked", "outage", 1}, {"parked", "invalid", 1}, {"parked", "", 1},
		{"slot", "concurrency", 2}, {"slot", "", 1},
	} {
		for range e.n {
			task := asynq.NewTaskWithHeaders("job", nil, map[string]string{"tenant": tenant, "wait": e.wait, "cause": e.cause})
			if _, err := b.client.Enqueue(task, asynq.Queue(b.queue)); err != nil {
				t.Fatal(err)
			}
		}
	}
	wait.For(t, 10*time.Second, "every task put back", func() bool {
		q, err := b.inspector.GetQueueInfo(b.queue)
		return err == nil && q.Scheduled == 23
	})
	check := func(want asynqrequeue.Waiting) {
		t.Helper()
		w, err := rq.Waiting(ctx, tenant)
		if w.NextDue = (time.Time{}); err != nil || w != want {
			t.Errorf("Waiting: %+v, %v; want %+v", w, err, want)
		}
		all, err := rq.WaitingByQueue(ctx, []string{b.queue})
		if w = all[b.queue]; err != nil {
			t.Fatal(err)
		}
		if w.NextDue = (time.Time{}); w != want {
			t.Errorf("WaitingByQueue: %+v; want %+v", w, want)
		}
	}
	check(asynqrequeue.Waiting{ForTurn: 12, ForOther: 8, ForSlot: 3, ByCause: asynqrequeue.ByCause{
		Rate: 5 + 2, Upstream: 4, Quota: 3 + 1, Hold: 1 + 2, Concurrency: 2 + 1, Outage: 1, Invalid: 1}})
}
