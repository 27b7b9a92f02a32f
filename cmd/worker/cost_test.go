package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/enqueuecli"
	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/internal/wait"
	"github.com/quotaq/quotaq/throttle"
)

// TestCostFromTheCLIIsChargedByTheWorker: a task enqueued with
// quotaq-enqueue --cost 5 takes 5 tokens and 5 quota units in
// quotaq-worker, with no code of the user's; a cost above the worker's
// default burst is refused by the CLI before anything is enqueued.
func TestCostFromTheCLIIsChargedByTheWorker(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	url := "redis://" + redistest.Addr(t) + "/0"
	queue := "q-" + prefix
	ctx := context.Background()
	l := throttle.New(rdb, throttle.WithPrefix(prefix))
	if err := l.SetPolicy(ctx, "acme", throttle.Policy{Rate: 0.001, Burst: 10, Quota: 100}); err != nil {
		t.Fatal(err)
	}
	startWorker(t, []string{"--redis-url", url, "--prefix", prefix, "--queues", queue, "--echo-types", "job", "--default-rate", "3", "--default-burst", "7"}, nil)
	enqueue := func(args ...string) (int, string) {
		var out, errb wait.Buffer
		code := enqueuecli.Run(ctx, append([]string{"--redis-url", url, "--prefix", prefix, "--queue", queue, "--type", "job"}, args...), strings.NewReader(""), &out, &errb)
		return code, errb.String()
	}
	if code, errOut := enqueue("--tenant", "acme", "--cost", "5"); code != enqueuecli.ExitOK {
		t.Fatalf("enqueue --cost 5: exit %d, %s", code, errOut)
	}
	ins := asynq.NewInspectorFromRedisClient(rdb)
	t.Cleanup(func() { _ = ins.Close() })
	wait.For(t, 20*time.Second, "the task to run", func() bool {
		q, err := ins.GetQueueInfo(queue)
		return err == nil && q.Processed == 1 && q.Active == 0
	})
	if r, err := l.Peek(ctx, "acme"); err != nil || r.Remaining != 5 || r.QuotaRemaining != 95 {
		t.Errorf("after a task of cost 5: %d tokens, %d quota units left (%v); want 5 and 95", r.Remaining, r.QuotaRemaining, err)
	}
	// the worker's default burst is 7 (recorded by the worker, not stored
	// as a policy): the CLI reads it as the worker does
	code, errOut := enqueue("--tenant", "newcomer", "--cost", "8")
	if code != enqueuecli.ExitUsage || !strings.Contains(errOut, `--cost 8 is above the burst of "newcomer", 7`) {
		t.Errorf("--cost 8 over the worker's default burst 7: exit %d, %q; want 2 naming the burst", code, errOut)
	}
	if q, err := ins.GetQueueInfo(queue); err != nil || q.Size != 0 || q.Archived != 0 {
		t.Errorf("queue %+v (%v): want nothing left, nothing archived", q, err)
	}
}
