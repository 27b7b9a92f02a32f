package enqueuecli

import (
	"context"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
)

// TestEnqueueCost: --cost goes into the task's "cost" header, a line's
// "cost" overrides it, and a task given none has no header (the worker
// charges it 1).
func TestEnqueueCost(t *testing.T) {
	t.Parallel()
	f := setup(t)
	if code, _, errOut := f.run("", "--tenant", "acme", "--type", "single", "--cost", "5", "--queue", f.queue); code != ExitOK {
		t.Fatalf("--cost 5: exit %d, stderr %q", code, errOut)
	}
	lines := `{"tenant":"acme","type":"own","cost":3}` + "\n" + `{"tenant":"acme","type":"dflt"}` + "\n" + `{"tenant":"acme","type":"null","cost":null}` + "\n"
	if code, _, errOut := f.run(lines, "--file", "-", "--cost", "2", "--queue", f.queue); code != ExitOK {
		t.Fatalf("NDJSON: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := f.run("", "--tenant", "acme", "--type", "none", "--queue", f.queue); code != ExitOK {
		t.Fatalf("no cost: exit %d, stderr %q", code, errOut)
	}
	got := map[string]string{}
	for _, ti := range f.list(f.queue, asynq.TaskStatePending) {
		got[ti.Type] = ti.Headers["cost"]
		if _, ok := ti.Headers["cost"]; !ok {
			got[ti.Type] = "(none)"
		}
	}
	want := map[string]string{"single": "5", "own": "3", "dflt": "2", "null": "2", "none": "(none)"}
	for typ, w := range want {
		if got[typ] != w {
			t.Errorf("task %s: cost header %q, want %q", typ, got[typ], w)
		}
	}
}

// TestShapedCostIsBooked: --shape --cost 5 books 5 tokens, and 5 quota
// units, with the tenant's limiter.
func TestShapedCostIsBooked(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	if err := f.limiter().SetPolicy(ctx, "acme", throttle.Policy{Rate: 0.001, Burst: 10, Quota: 100}); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := f.run("", "--tenant", "acme", "--type", "t", "--cost", "5", "--shape", "--queue", f.queue); code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if r, err := f.limiter().Peek(ctx, "acme"); err != nil || r.Remaining != 5 || r.QuotaRemaining != 95 {
		t.Errorf("after a shaped task of cost 5: %d tokens, %d quota units left (%v); want 5 and 95", r.Remaining, r.QuotaRemaining, err)
	}
}
