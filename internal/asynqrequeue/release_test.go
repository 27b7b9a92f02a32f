package asynqrequeue_test

import (
	"context"
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
		tenant := task.Headers()["tenant"]
		req := asynqrequeue.Request{Queue: b.queue, ID: id, Due: time.Now().Add(time.Hour), Tenant: tenant, Parked: tenant != "booked"}
		if _, err := rq.Requeue(ctx, req); err != nil {
			return err
		}
		return asynq.RevokeTask
	}, time.Hour)

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
	ran := func(ids []string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, id := range ids {
			if runs[id] == 2 {
				n++
			}
		}
		return n
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
	// every tenant: globex's, not the booked ones
	if moved, err = rq.Release(ctx); err != nil || moved != 3 {
		t.Fatalf("Release(): %d, %v; want globex's 3", moved, err)
	}
	wait.For(t, 10*time.Second, "globex's tasks to run", func() bool { return ran(globex) == 3 })
	if n := ran(booked); n != 0 {
		t.Fatalf("%d booked tasks ran, want 0 (they wait for their slot)", n)
	}
}
