package enqueuecli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// TestEnqueueShapedBacklog: --shape keeps a backlog beyond the tenant's
// rate out of the queue, each task scheduled at its slot on a whole second,
// and books the tokens under the ticket the worker redeems.
func TestEnqueueShapedBacklog(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	policy := throttle.Policy{Rate: 2, Burst: 3}
	if err := f.limiter().SetPolicy(ctx, "acme", policy); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, out, errOut := f.run("", "--tenant", "acme", "--type", "t", "--count", "20", "--queue", f.queue,
		"--shape", "--json", "--progress", "never")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	elapsed := time.Since(start)
	var sum struct{ Enqueued, Shaped int }
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Enqueued != 20 || sum.Shaped != 20 {
		t.Fatalf("summary %q (%v), want 20 enqueued, 20 shaped", out, err)
	}
	pending, scheduled := f.list(f.queue, asynq.TaskStatePending), f.list(f.queue, asynq.TaskStateScheduled)
	if bound := int(policy.Burst) + int(policy.Rate*elapsed.Seconds()) + 1; len(pending) > bound || len(pending)+len(scheduled) != 20 {
		t.Fatalf("%d pending, %d scheduled; want at most %d in the queue, the rest scheduled", len(pending), len(scheduled), bound)
	}
	for _, ti := range scheduled {
		if ti.NextProcessAt.Nanosecond() != 0 || ti.NextProcessAt.Before(start) {
			t.Errorf("task %s scheduled at %s: want a whole second after the start", ti.ID, ti.NextProcessAt)
		}
	}
	// the bucket holds the bookings of all 20: the next token is ~8.5 s away
	if p, err := f.limiter().Peek(ctx, "acme"); err != nil || p.RetryAfter < 5*time.Second {
		t.Errorf("after shaping: %+v %v; want the bookings of 20 tasks", p, err)
	}
	// a task whose tokens were there at once is prepaid under the worker's
	// ticket: redeeming it charges nothing more
	ti := pending[0]
	before, _ := f.limiter().Peek(ctx, "acme")
	res, err := f.limiter().Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1, Ticket: worker.TaskTicket(ti.Queue, ti.ID)})
	if err != nil || !res.Result.Allowed {
		t.Fatalf("redeeming task %s: %+v %v; want it admitted on its booking", ti.ID, res, err)
	}
	if after, _ := f.limiter().Peek(ctx, "acme"); after.RetryAfter > before.RetryAfter {
		t.Errorf("redeeming charged again: next token %s away, %s before", after.RetryAfter, before.RetryAfter)
	}
}

// TestEnqueueShapeNDJSON: a line's "shape" overrides --shape; the summary
// counts the shaped ones.
func TestEnqueueShapeNDJSON(t *testing.T) {
	t.Parallel()
	f := setup(t)
	if err := f.limiter().SetPolicy(context.Background(), "slow", throttle.Policy{Rate: 0.5, Burst: 1}); err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	for i := range 6 {
		fmt.Fprintf(&in, `{"tenant":"slow","payload":{"i":%d},"shape":%v}`+"\n", i, i%2 == 0)
	}
	fmt.Fprintln(&in, `{"tenant":"slow","payload":{"i":6}}`) // --shape's default: off
	code, out, errOut := f.run(in.String(), "--file", "-", "--type", "t", "--queue", f.queue, "--concurrency", "1")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "enqueued 7 tasks") || !strings.Contains(out, "3 shaped") {
		t.Errorf("stdout %q, want 7 enqueued, 3 shaped", out)
	}
	// shaped: i=0 now, i=2 and i=4 at their slots, 2 s apart; the others
	// are in the queue for the worker to throttle
	scheduled := f.list(f.queue, asynq.TaskStateScheduled)
	got := map[string]bool{}
	for _, ti := range scheduled {
		got[string(ti.Payload)] = true
	}
	if len(scheduled) != 2 || !got[`{"i":2}`] || !got[`{"i":4}`] {
		t.Errorf("scheduled %v, want the shaped lines 2 and 4", got)
	}
	if n := len(f.list(f.queue, asynq.TaskStatePending)); n != 5 {
		t.Errorf("%d pending, want 5 (4 unshaped, 1 shaped with its token there)", n)
	}
	if code, _, errOut := f.run(`{"tenant":"slow","type":"t","shape":"yes"}`, "--file", "-", "--queue", f.queue); code != ExitUsage || !strings.Contains(errOut, `"shape"`) {
		t.Errorf("a non-boolean shape: exit %d, stderr %q; want 2 naming the field", code, errOut)
	}
}

// TestEnqueueShapeMaxWait: tasks whose slot is beyond --shape-max-wait are
// refused, the run stops and says so, and nothing is booked for them.
func TestEnqueueShapeMaxWait(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	if err := f.limiter().SetPolicy(ctx, "acme", throttle.Policy{Rate: 0.1, Burst: 1}); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := f.run("", "--tenant", "acme", "--type", "t", "--count", "3", "--queue", f.queue,
		"--shape", "--shape-max-wait", "5s", "--progress", "never", "--concurrency", "1")
	if code != ExitFailure || !strings.Contains(errOut, "stopped by --shape-max-wait: enqueued 1 of 3 tasks (1 shaped") || !strings.Contains(errOut, "max wait of 5s") ||
		strings.Contains(errOut, "nothing enqueued") || strings.Contains(errOut, "failed (Redis") {
		t.Fatalf("exit %d, stderr %q; want 1, stopped by --shape-max-wait after enqueuing 1 of 3, naming the max wait and not blaming Redis", code, errOut)
	}
	if n := f.size(f.queue); n != 1 {
		t.Errorf("queue holds %d tasks, want 1", n)
	}
	// only the first task's token is spent: the next slot is 10 s away, not more
	res, err := f.limiter().Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1})
	if err != nil || !res.OK || res.Delay > 10*time.Second {
		t.Errorf("next booking: %+v %v; want due within 10s", res, err)
	}
}

func TestEnqueueShapeUsage(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"MaxWaitWithoutShape", []string{"--shape-max-wait", "1m"}, "without --shape"},
		{"NegativeMaxWait", []string{"--shape", "--shape-max-wait", "-1s"}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--tenant", "acme", "--type", "t", "--queue", f.queue}, tt.args...)
			code, out, errOut := f.run("", args...)
			if code != ExitUsage || out != "" || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 saying %q", code, out, errOut, tt.want)
			}
		})
	}
	if n := f.size(f.queue); n != 0 {
		t.Errorf("%d tasks enqueued by usage errors", n)
	}
}
