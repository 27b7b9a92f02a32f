package enqueuecli

import (
	"context"
	"strings"
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

// TestCostAboveWhatCanRunIsRefusedAtEnqueue: a task that costs more than
// the burst (or the quota) of its tenant, of the default policy it falls
// back to, or of its upstream, could never run: the command exits 2 naming
// the field, the limit and how to fix it, and enqueues and books nothing,
// in bulk even when the earlier lines are fine.
func TestCostAboveWhatCanRunIsRefusedAtEnqueue(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	l := f.limiter()
	for id, p := range map[string]throttle.Policy{
		"acme":                    {Rate: 1, Burst: 10},
		"metered":                 {Rate: 1, Burst: 10, Quota: 4},
		throttle.Upstream("api"):  {Rate: 1, Burst: 3},
		throttle.Upstream("wide"): {Rate: 1, Burst: 100},
	} {
		if err := l.SetPolicy(ctx, id, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SetDefaultPolicy(ctx, throttle.Policy{Rate: 1, Burst: 6}); err != nil {
		t.Fatal(err)
	}
	task := func(extra ...string) []string {
		return append([]string{"--type", "t", "--queue", f.queue, "--progress", "never"}, extra...)
	}
	file := func(extra ...string) []string { return task(append([]string{"--file", "-"}, extra...)...) }
	lines := func(ls ...string) string { return strings.Join(ls, "\n") + "\n" }
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"AboveBurst", "", task("--tenant", "acme", "--cost", "11"), `--cost 11 is above the burst of "acme", 10: such a task could never run (lower the cost, or raise the burst: quotaq-enqueue policy set acme --burst 11)`},
		{"AboveBurstShaped", "", task("--tenant", "acme", "--cost", "11", "--shape"), `--cost 11 is above the burst of "acme", 10`},
		{"AboveBurstCount", "", task("--tenant", "acme", "--cost", "12", "--count", "50"), `--cost 12 is above the burst`},
		{"AboveBurstByHeader", "", task("--tenant", "acme", "--header", "cost=11"), `header "cost" 11 is above the burst`},
		{"LineAboveBurstByHeader", lines(`{"tenant":"acme","headers":{"cost":"11"}}`), file(), `line 1: header "cost" 11 is above the burst`},
		{"AboveDefaultBurst", "", task("--tenant", "newcomer", "--cost", "7"), `above the burst of "newcomer", 6`},
		{"AboveQuota", "", task("--tenant", "metered", "--cost", "5"), `--cost 5 is above the quota of "metered", 4: such a task could never run (lower the cost, or raise the quota: quotaq-enqueue policy set metered --quota 5)`},
		{"AboveUpstreamBurst", "", task("--tenant", "acme", "--cost", "4", "--header", "upstream=api"), `above the burst of "upstream:api", 3`},
		{"LineAboveBurst", lines(`{"tenant":"acme","cost":2}`, `{"tenant":"acme"}`, `{"tenant":"acme","cost":11}`), file(), `line 3: "cost" 11 is above the burst of "acme", 10`},
		{"LineHighestCostNamed", lines(`{"tenant":"acme","cost":11}`, `{"tenant":"acme","cost":14}`, `{"tenant":"acme","cost":14}`), file(), `line 2: "cost" 14 is above`},
		{"LineAboveBurstByFlag", lines(`{"tenant":"acme","cost":1}`, `{"tenant":"acme"}`), file("--cost", "11"), `line 2: "cost" 11 is above`},
		{"LineAboveUpstream", lines(`{"tenant":"acme","cost":3,"headers":{"upstream":"api"}}`, `{"tenant":"acme","cost":4,"headers":{"upstream":"api"}}`), file(), `line 2: "cost" 4 is above the burst of "upstream:api", 3`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := f.run(tt.stdin, tt.args...)
			if code != ExitUsage || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and one line saying %q", code, out, errOut, tt.want)
			}
		})
	}
	t.Cleanup(func() {
		if n := f.size(f.queue); n != 0 {
			t.Errorf("queue holds %d tasks after refused costs, want 0", n)
		}
		if r, err := l.Peek(ctx, "acme"); err != nil || r.Remaining != 10 {
			t.Errorf("acme has %d tokens (%v), want all 10: nothing booked", r.Remaining, err)
		}
	})
}

// TestCostWithinTheBurstIsEnqueued: the check lets through what fits,
// the burst itself included, and a high cost for an upstream whose burst
// allows it.
func TestCostWithinTheBurstIsEnqueued(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	if err := f.limiter().SetPolicy(ctx, "acme", throttle.Policy{Rate: 1, Burst: 10}); err != nil {
		t.Fatal(err)
	}
	if err := f.limiter().SetPolicy(ctx, throttle.Upstream("wide"), throttle.Policy{Rate: 1, Burst: 100}); err != nil {
		t.Fatal(err)
	}
	in := `{"tenant":"acme","cost":10}` + "\n" + `{"tenant":"acme","cost":10,"headers":{"upstream":"wide"}}` + "\n"
	if code, out, errOut := f.run(in, "--file", "-", "--type", "t", "--queue", f.queue); code != ExitOK || !strings.Contains(out, "enqueued 2 tasks") {
		t.Errorf("exit %d, stdout %q, stderr %q; want both enqueued", code, out, errOut)
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
