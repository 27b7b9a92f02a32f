package asynqrequeue_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/asynqrequeue"
	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/internal/wait"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// testBundle is what a test needs: a client of the package's redis-server,
// an asynq queue no other test uses, and asynq's client and inspector.
type testBundle struct {
	rdb       *redis.Client
	queue     string
	client    *asynq.Client
	inspector *asynq.Inspector
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	b := &testBundle{
		rdb:       rdb,
		queue:     "q-" + prefix,
		client:    asynq.NewClientFromRedisClient(rdb),
		inspector: asynq.NewInspectorFromRedisClient(rdb),
	}
	return b
}

// startServer runs an asynq server on b's queue with handler h, shut down
// when the test ends.
func (b *testBundle) startServer(t *testing.T, h asynq.HandlerFunc, delayedCheck time.Duration) {
	t.Helper()
	srv := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
		Queues:                   map[string]int{b.queue: 1},
		Concurrency:              4,
		TaskCheckInterval:        20 * time.Millisecond,
		DelayedTaskCheckInterval: delayedCheck,
		LogLevel:                 asynq.FatalLevel,
	})
	if err := srv.Start(h); err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
}

// run records each run of the tasks it handles and what the handler saw.
type runs struct {
	mu   sync.Mutex
	seen []runInfo
}

type runInfo struct {
	id      string
	retried int
	max     int
	headers map[string]string
	payload string
}

func (r *runs) add(ctx context.Context, task *asynq.Task) int {
	id, _ := asynq.GetTaskID(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, runInfo{id: id, retried: retried, max: maxRetry, headers: task.Headers(), payload: string(task.Payload())})
	return len(r.seen)
}

func (r *runs) list() []runInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]runInfo(nil), r.seen...)
}

// TestRequeuedTaskRunsAgainUnchanged is the whole mechanism on a real asynq
// server: the first run re-queues its own task and revokes; the task comes
// back as the very same task, and asynq counts it once, as processed.
func TestRequeuedTaskRunsAgainUnchanged(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts []asynq.Option
	}{
		{"MaxRetryZero", []asynq.Option{asynq.MaxRetry(0)}},
		{"UniqueWithRetention", []asynq.Option{asynq.MaxRetry(3), asynq.Unique(time.Minute), asynq.Retention(time.Hour), asynq.Timeout(42 * time.Second)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			rq := asynqrequeue.New(b.rdb)
			waker := asynqrequeue.NewWaker(rq, slog.New(slog.NewTextHandler(io.Discard, nil)), 100)
			t.Cleanup(waker.Stop)

			var rs runs
			var requeueErr error
			var due time.Time
			b.startServer(t, func(ctx context.Context, task *asynq.Task) error {
				if rs.add(ctx, task) > 1 {
					return nil
				}
				id, _ := asynq.GetTaskID(ctx)
				due = time.Now().Add(300 * time.Millisecond)
				out, err := rq.Requeue(ctx, asynqrequeue.Request{Queue: b.queue, ID: id, Due: due})
				if err != nil {
					requeueErr = err
					return err
				}
				waker.Add(b.queue, id, out.DueMillis)
				return asynq.RevokeTask
			}, time.Hour) // asynq's forwarder never runs: only the Waker can bring it back

			task := asynq.NewTaskWithHeaders("job", []byte(`{"n":1}`), map[string]string{"tenant": "acme"})
			info, err := b.client.Enqueue(task, append([]asynq.Option{asynq.Queue(b.queue)}, tc.opts...)...)
			if err != nil {
				t.Fatalf("enqueue: %v", err)
			}
			wait.For(t, 10*time.Second, "the second run", func() bool { return len(rs.list()) >= 2 })
			if requeueErr != nil {
				t.Fatalf("requeue: %v", requeueErr)
			}
			seen := rs.list()
			second := seen[1]
			if second.id != info.ID || second.retried != 0 || second.max != info.MaxRetry ||
				second.headers["tenant"] != "acme" || second.payload != `{"n":1}` {
				t.Errorf("second run saw %+v, want id %s, retried 0, max retry %d, the same header and payload", second, info.ID, info.MaxRetry)
			}
			if since := time.Since(due); since < -50*time.Millisecond {
				t.Errorf("task came back %s before its due time", -since)
			}

			// Inspector: one task, processed once, never failed or archived,
			// options kept.
			var q *asynq.QueueInfo
			wait.For(t, 10*time.Second, "asynq to finish the task", func() bool {
				q, err = b.inspector.GetQueueInfo(b.queue)
				return err == nil && q.Active == 0 && q.Pending == 0 && q.Scheduled == 0
			})
			if q.Processed != 1 || q.Failed != 0 || q.Archived != 0 || q.Retry != 0 {
				t.Errorf("queue stats processed=%d failed=%d archived=%d retry=%d, want 1 0 0 0", q.Processed, q.Failed, q.Archived, q.Retry)
			}
			if info.Retention > 0 {
				got, err := b.inspector.GetTaskInfo(b.queue, info.ID)
				if err != nil {
					t.Fatalf("completed task: %v", err)
				}
				if got.State != asynq.TaskStateCompleted || got.Timeout != 42*time.Second || got.Retention != time.Hour || got.LastErr != "" {
					t.Errorf("completed task state=%v timeout=%s retention=%s lastErr=%q", got.State, got.Timeout, got.Retention, got.LastErr)
				}
			}
			if len(rs.list()) != 2 {
				t.Errorf("task ran %d times, want 2", len(rs.list()))
			}
		})
	}
}

// TestRequeuedTaskIsScheduledAsIs looks at the task between the re-queue
// and its return: scheduled, same message, unique lock kept, not failed.
func TestRequeuedTaskIsScheduledAsIs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rq := asynqrequeue.New(b.rdb)
	requeued := make(chan asynqrequeue.Outcome, 1)
	b.startServer(t, func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		out, err := rq.Requeue(ctx, asynqrequeue.Request{Queue: b.queue, ID: id, Due: time.Now().Add(time.Hour)})
		if err != nil {
			t.Errorf("requeue: %v", err)
			return err
		}
		requeued <- out
		return asynq.RevokeTask
	}, 50*time.Millisecond)

	task := asynq.NewTaskWithHeaders("job", []byte("payload"), map[string]string{"h": "v"})
	info, err := b.client.Enqueue(task, asynq.Queue(b.queue), asynq.MaxRetry(0), asynq.Unique(time.Hour), asynq.TaskID("fixed-id"))
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	var out asynqrequeue.Outcome
	select {
	case out = <-requeued:
	case <-time.After(10 * time.Second):
		t.Fatal("task was never run")
	}
	if out.Throttles != 1 || out.Waited < 59*time.Minute {
		t.Errorf("outcome %+v, want 1 throttle and about an hour of wait", out)
	}
	var got *asynq.TaskInfo
	wait.For(t, 10*time.Second, "the task to be scheduled", func() bool {
		got, err = b.inspector.GetTaskInfo(b.queue, info.ID)
		return err == nil && got.State == asynq.TaskStateScheduled
	})
	if got.Type != "job" || string(got.Payload) != "payload" || got.Headers["h"] != "v" || got.MaxRetry != 0 ||
		got.Retried != 0 || got.LastErr != "" || !got.LastFailedAt.IsZero() {
		t.Errorf("scheduled task %+v changed", got)
	}
	if d := time.Until(got.NextProcessAt); d < 59*time.Minute || d > time.Hour+time.Second {
		t.Errorf("next process at in %s, want about an hour", d)
	}
	// The processor's Done failed on its first check, so the unique lock
	// (owned by the task) is still there and nothing was counted.
	if owner, err := b.rdb.Get(context.Background(), "asynq:{"+b.queue+"}:unique:"+uniqueSuffix(t, b, info)).Result(); err != nil || owner != info.ID {
		t.Errorf("unique lock owner %q, %v; want %q", owner, err, info.ID)
	}
	if _, err := b.client.Enqueue(task, asynq.Queue(b.queue), asynq.Unique(time.Hour)); !errors.Is(err, asynq.ErrDuplicateTask) {
		t.Errorf("enqueue of a duplicate: %v, want ErrDuplicateTask", err)
	}
	q, err := b.inspector.GetQueueInfo(b.queue)
	if err != nil {
		t.Fatal(err)
	}
	if q.Processed != 0 || q.Failed != 0 || q.Scheduled != 1 || q.Active != 0 {
		t.Errorf("queue processed=%d failed=%d scheduled=%d active=%d, want 0 0 1 0", q.Processed, q.Failed, q.Scheduled, q.Active)
	}
	if ts, err := b.inspector.ListScheduledTasks(b.queue); err != nil || len(ts) != 1 || ts[0].ID != info.ID {
		t.Errorf("ListScheduledTasks: %v, %v", ts, err)
	}
}

// uniqueSuffix finds the unique key asynq gave the task.
func uniqueSuffix(t *testing.T, b *testBundle, info *asynq.TaskInfo) string {
	t.Helper()
	keys, err := b.rdb.Keys(context.Background(), "asynq:{"+b.queue+"}:unique:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("unique keys %v, %v; want one", keys, err)
	}
	return keys[0][len("asynq:{"+b.queue+"}:unique:"):]
}

// TestAsynqForwarderIsTheBackstop: with no Waker, asynq's own forwarder
// brings the task back, no earlier than its due time.
func TestAsynqForwarderIsTheBackstop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rq := asynqrequeue.New(b.rdb)
	var rs runs
	var due time.Time
	b.startServer(t, func(ctx context.Context, task *asynq.Task) error {
		if rs.add(ctx, task) > 1 {
			return nil
		}
		id, _ := asynq.GetTaskID(ctx)
		due = time.Now().Add(200 * time.Millisecond)
		if _, err := rq.Requeue(ctx, asynqrequeue.Request{Queue: b.queue, ID: id, Due: due}); err != nil {
			t.Errorf("requeue: %v", err)
		}
		return asynq.RevokeTask
	}, 100*time.Millisecond)
	if _, err := b.client.Enqueue(asynq.NewTask("job", nil), asynq.Queue(b.queue), asynq.MaxRetry(0)); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "the second run", func() bool { return len(rs.list()) >= 2 })
	if time.Now().Before(due) {
		t.Errorf("task came back before its due time")
	}
}

func TestRequeueRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	rq := asynqrequeue.New(b.rdb)

	t.Run("PendingTaskIsNotActive", func(t *testing.T) {
		t.Parallel()
		info, err := b.client.Enqueue(asynq.NewTask("job", nil), asynq.Queue(b.queue+"-pending"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = rq.Requeue(ctx, asynqrequeue.Request{Queue: info.Queue, ID: info.ID, Due: time.Now().Add(time.Second)})
		if !errors.Is(err, asynqrequeue.ErrNotActive) {
			t.Fatalf("requeue of a pending task: %v, want ErrNotActive", err)
		}
		got, err := b.inspector.GetTaskInfo(info.Queue, info.ID)
		if err != nil || got.State != asynq.TaskStatePending {
			t.Errorf("task after refused requeue: %+v, %v; want it still pending", got, err)
		}
	})
	t.Run("UnknownTask", func(t *testing.T) {
		t.Parallel()
		_, err := rq.Requeue(ctx, asynqrequeue.Request{Queue: b.queue, ID: "nope", Due: time.Now()})
		if !errors.Is(err, asynqrequeue.ErrNotActive) {
			t.Fatalf("requeue of an unknown task: %v, want ErrNotActive", err)
		}
	})
	t.Run("EmptyID", func(t *testing.T) {
		t.Parallel()
		if _, err := rq.Requeue(ctx, asynqrequeue.Request{Queue: b.queue}); err == nil {
			t.Fatal("requeue with no id: no error")
		}
	})
	t.Run("UnknownCause", func(t *testing.T) {
		t.Parallel()
		_, err := rq.Requeue(ctx, asynqrequeue.Request{Queue: b.queue, ID: "nope", Due: time.Now(), Cause: "slow"})
		if err == nil || !strings.Contains(err.Error(), `unknown cause "slow"`) {
			t.Fatalf("requeue with cause slow: %v, want an error naming it", err)
		}
	})
}

// TestMaxWaitCountsEveryRequeue: the total wait adds up over re-queues and
// the one that would pass the cap is refused, writing nothing.
func TestMaxWaitCountsEveryRequeue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rq := asynqrequeue.New(b.rdb)
	waker := asynqrequeue.NewWaker(rq, nil, 100)
	t.Cleanup(waker.Stop)
	type result struct {
		out asynqrequeue.Outcome
		err error
	}
	results := make(chan result, 10)
	b.startServer(t, func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		out, err := rq.Requeue(ctx, asynqrequeue.Request{Queue: b.queue, ID: id, Due: time.Now().Add(400 * time.Millisecond), MaxWait: time.Second})
		results <- result{out, err}
		if err != nil {
			return nil // done
		}
		waker.Add(b.queue, id, out.DueMillis)
		return asynq.RevokeTask
	}, time.Hour)
	if _, err := b.client.Enqueue(asynq.NewTask("job", nil), asynq.Queue(b.queue), asynq.MaxRetry(0)); err != nil {
		t.Fatal(err)
	}
	var got []result
	for len(got) < 3 {
		select {
		case r := <-results:
			got = append(got, r)
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d runs: %+v", len(got), got)
		}
	}
	for i, r := range got[:2] {
		if r.err != nil || r.out.Throttles != int64(i+1) {
			t.Errorf("requeue %d: %+v %v, want throttle %d and no error", i+1, r.out, r.err, i+1)
		}
	}
	if !errors.Is(got[2].err, asynqrequeue.ErrMaxWait) || got[2].out.Throttles != 3 || got[2].out.Waited <= time.Second {
		t.Errorf("third requeue: %+v %v, want ErrMaxWait with 3 throttles and over 1s of wait", got[2].out, got[2].err)
	}
}

// TestWakeLeavesChangedTasksAlone: a due time that no longer matches, or a
// task that is not scheduled, is not moved.
func TestWakeLeavesChangedTasksAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	rq := asynqrequeue.New(b.rdb)
	info, err := b.client.Enqueue(asynq.NewTask("job", nil), asynq.Queue(b.queue), asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	key := "asynq:{" + b.queue + "}:t:" + info.ID
	if err := b.rdb.HSet(ctx, key, "quotaq_due", "1000").Err(); err != nil {
		t.Fatal(err)
	}
	n, err := rq.Wake(ctx, b.queue, []asynqrequeue.Due{{ID: info.ID, DueMillis: 999}, {ID: "missing", DueMillis: 1000}})
	if err != nil || n != 0 {
		t.Fatalf("wake with a stale due time: moved %d, %v; want 0", n, err)
	}
	n, err = rq.Wake(ctx, b.queue, []asynqrequeue.Due{{ID: info.ID, DueMillis: 1000}})
	if err != nil || n != 1 {
		t.Fatalf("wake: moved %d, %v; want 1", n, err)
	}
	got, err := b.inspector.GetTaskInfo(b.queue, info.ID)
	if err != nil || got.State != asynq.TaskStatePending {
		t.Fatalf("woken task: %+v, %v; want pending", got, err)
	}
	if n, err := rq.Wake(ctx, b.queue, []asynqrequeue.Due{{ID: info.ID, DueMillis: 1000}}); err != nil || n != 0 {
		t.Errorf("second wake of a pending task moved %d, %v; want 0", n, err)
	}
}

// TestCancelledContextSendsNothing pins what makes asynq's sync retry of
// Done harmless: after a revoke whose Done failed, asynq retries Done every
// 5 s with the context markAsDone had already cancelled; go-redis must not
// send a command on a cancelled context (else a retry could delete the task
// once it is active again).
func TestCancelledContextSendsNothing(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	script := redis.NewScript(`return redis.call("INCR", KEYS[1])`)
	if err := script.Run(ctx, rdb, []string{prefix + "n"}).Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("script on a cancelled context: %v, want context.Canceled", err)
	}
	n, err := rdb.Exists(context.Background(), prefix+"n").Result()
	if err != nil || n != 0 {
		t.Errorf("key written by a cancelled script: exists=%d, %v", n, err)
	}
}
