package asynqrequeue

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/redistest"
)

// TestAsynqVersion fails when asynq is upgraded: this package relies on
// v0.26.0's key layout and on how its processor, heartbeater, syncer and
// recoverer treat a revoked task (see doc.go). Re-read those files in the
// new version, then update the version here.
func TestAsynqVersion(t *testing.T) {
	t.Parallel()
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatalf("read go.mod: %v", err)
	}
	for _, line := range strings.Split(string(mod), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "require" {
			f = f[1:]
		}
		if len(f) >= 2 && f[0] == "github.com/hibiken/asynq" {
			if f[1] != "v0.26.0" {
				t.Fatalf("go.mod requires asynq %s; asynqrequeue was checked against v0.26.0 (re-check doc.go's assumptions, then update this test)", f[1])
			}
			return
		}
	}
	t.Fatal("go.mod does not require github.com/hibiken/asynq")
}

// TestKeyLayout checks this package's key names against the keys asynq
// itself writes for a pending and for a scheduled task.
func TestKeyLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	queue := "layout-" + prefix
	c := asynq.NewClientFromRedisClient(rdb)
	pending, err := c.Enqueue(asynq.NewTask("job", nil), asynq.Queue(queue))
	if err != nil {
		t.Fatal(err)
	}
	scheduled, err := c.Enqueue(asynq.NewTask("job", nil), asynq.Queue(queue), asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if state, err := rdb.HGet(ctx, taskKey(queue, pending.ID), "state").Result(); err != nil || state != "pending" {
		t.Errorf("HGET %s state = %q, %v; want pending", taskKey(queue, pending.ID), state, err)
	}
	if ids, err := rdb.LRange(ctx, pendingKey(queue), 0, -1).Result(); err != nil || len(ids) != 1 || ids[0] != pending.ID {
		t.Errorf("LRANGE %s = %v, %v; want [%s]", pendingKey(queue), ids, err, pending.ID)
	}
	if _, err := rdb.ZScore(ctx, scheduledKey(queue), scheduled.ID).Result(); err != nil {
		t.Errorf("ZSCORE %s %s: %v", scheduledKey(queue), scheduled.ID, err)
	}
	if p := taskKeyPrefix(queue); taskKey(queue, "x") != p+"x" {
		t.Errorf("task key prefix %q does not prefix task keys", p)
	}

	// active and lease: seen from inside a running task.
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Queues: map[string]int{queue + "-run": 1}, Concurrency: 1,
		TaskCheckInterval: 20 * time.Millisecond, LogLevel: asynq.FatalLevel,
	})
	type seen struct {
		inActive, inLease bool
		state             string
	}
	ch := make(chan seen, 1)
	if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		q, _ := asynq.GetQueueName(ctx)
		ids, _ := rdb.LRange(ctx, activeKey(q), 0, -1).Result()
		_, err := rdb.ZScore(ctx, leaseKey(q), id).Result()
		state, _ := rdb.HGet(ctx, taskKey(q, id), "state").Result()
		ch <- seen{inActive: len(ids) == 1 && ids[0] == id, inLease: err == nil, state: state}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if _, err := c.Enqueue(asynq.NewTask("job", nil), asynq.Queue(queue+"-run")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-ch:
		if !s.inActive || !s.inLease || s.state != "active" {
			t.Errorf("running task: in %s=%v, in %s=%v, state %q; want true, true, active",
				activeKey(queue+"-run"), s.inActive, leaseKey(queue+"-run"), s.inLease, s.state)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("task never ran")
	}
}
