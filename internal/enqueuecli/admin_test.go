package enqueuecli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/scheduler"
	"github.com/quotaq/quotaq/throttle"
)

func (f *fixture) limiter() *throttle.Limiter {
	return throttle.New(f.rdb, throttle.WithPrefix(f.prefix))
}

func TestPolicyCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	l := f.limiter()

	code, out, errOut := f.run("", "policy", "set", "acme", "--rate", "5", "--burst", "20", "--quota", "1000", "--quota-period", "24h")
	if code != ExitOK || !strings.Contains(out, "5/s burst 20 quota 1000 per 24h0m0s") {
		t.Fatalf("policy set: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	p, explicit, err := l.GetPolicy(ctx, "acme")
	if want := (throttle.Policy{Rate: 5, Burst: 20, Quota: 1000, QuotaPeriod: 24 * time.Hour}); err != nil || !explicit || p != want {
		t.Fatalf("stored policy %+v explicit=%v err=%v, want %+v", p, explicit, err, want)
	}

	t.Run("SetKeepsTheFieldsNotGiven", func(t *testing.T) {
		code, _, errOut := f.run("", "policy", "set", "--rate", "7", "acme")
		if code != ExitOK {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		p, _, _ := l.GetPolicy(ctx, "acme")
		if want := (throttle.Policy{Rate: 7, Burst: 20, Quota: 1000, QuotaPeriod: 24 * time.Hour}); p != want {
			t.Errorf("policy %+v, want %+v", p, want)
		}
	})

	t.Run("Concurrency", func(t *testing.T) {
		code, out, errOut := f.run("", "policy", "set", "upstream:api.example.com", "--rate", "10", "--burst", "10", "--concurrency", "4")
		if code != ExitOK || !strings.Contains(out, "concurrency 4") {
			t.Fatalf("policy set --concurrency: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		p, _, err := l.GetPolicy(ctx, throttle.Upstream("api.example.com"))
		if err != nil || p.Concurrency != 4 {
			t.Fatalf("stored policy %+v, %v; want concurrency 4", p, err)
		}
		code, out, _ = f.run("", "policy", "show", "upstream:api.example.com", "--json")
		var v policyView
		if err := json.Unmarshal([]byte(out), &v); code != ExitOK || err != nil || v.Concurrency != 4 {
			t.Fatalf("show --json: exit %d, %+v, %v", code, v, err)
		}
	})

	t.Run("StandingShowsTasksInFlight", func(t *testing.T) {
		if code, _, errOut := f.run("", "policy", "set", "busy", "--rate", "10", "--burst", "10", "--concurrency", "2"); code != ExitOK {
			t.Fatalf("policy set: exit %d, %s", code, errOut)
		}
		if _, err := l.Reserve(ctx, throttle.Request{IDs: []string{"busy"}, N: 1, Slot: "task-1"}); err != nil {
			t.Fatal(err)
		}
		code, out, _ := f.run("", "standing", "busy")
		if code != ExitOK || !strings.Contains(out, "in flight  1 of 2, 0 waiting for a slot") {
			t.Errorf("standing: exit %d, stdout:\n%s", code, out)
		}
	})

	t.Run("ShowJSON", func(t *testing.T) {
		code, out, _ := f.run("", "policy", "show", "acme", "--json")
		var v policyView
		if err := json.Unmarshal([]byte(out), &v); code != ExitOK || err != nil {
			t.Fatalf("exit %d, stdout %q: %v", code, out, err)
		}
		if v.Tenant != "acme" || v.Default || v.Rate != 7 || v.Burst != 20 || v.Quota != 1000 || v.QuotaPeriod != "24h0m0s" {
			t.Errorf("show --json = %+v", v)
		}
	})

	t.Run("InvalidPolicyExits2AndKeepsTheOld", func(t *testing.T) {
		for _, args := range [][]string{
			{"policy", "set", "acme", "--rate", "0"},
			{"policy", "set", "acme", "--burst", "0"},
			{"policy", "set", "acme", "--quota", "0", "--quota-period", "1h"}, // a period without a quota
			{"policy", "set", "acme", "--rate", "nan"},
			{"policy", "set", "acme", "--rate", "1e-10", "--burst", "1"}, // 1e9/rate does not fit an int64
			{"policy", "set", "--default", "--rate", "1e-12"},
			{"policy", "set", "acme", "--rate", "2e9"},
			{"policy", "set", "acme", "--concurrency", "-1"},
			{"policy", "set", "acme", "--concurrency", "1.5"},
			{"policy", "set", "acme"},
			{"policy", "set", "--default", "acme", "--rate", "1"},
			{"policy", "show"},
			{"policy", "show", "a", "b"},
			{"policy", "show", "bad\x01id"},
			{"policy", "frob", "acme"},
			{"policy"},
		} {
			code, out, errOut := f.run("", args...)
			if code != ExitUsage || out != "" || strings.Count(errOut, "\n") != 1 {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and one line", args, code, out, errOut)
			}
		}
		p, _, _ := l.GetPolicy(ctx, "acme")
		if want := (throttle.Policy{Rate: 7, Burst: 20, Quota: 1000, QuotaPeriod: 24 * time.Hour}); p != want {
			t.Errorf("policy after refused changes %+v, want %+v", p, want)
		}
	})

	t.Run("UpstreamPolicyIsApartFromTheTenant", func(t *testing.T) {
		code, out, errOut := f.run("", "policy", "set", "upstream:acme", "--rate", "2", "--burst", "4")
		if code != ExitOK || !strings.Contains(out, "set upstream acme: 2/s burst 4") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if p, explicit, err := l.GetPolicy(ctx, throttle.Upstream("acme")); err != nil || !explicit || p.Burst != 4 {
			t.Fatalf("upstream policy %+v explicit=%v err=%v", p, explicit, err)
		}
		if p, _, _ := l.GetPolicy(ctx, "acme"); p.Burst != 20 {
			t.Errorf("tenant acme's policy changed with the upstream's: %+v", p)
		}
		code, out, _ = f.run("", "standing", "upstream:acme")
		if code != ExitOK || !strings.Contains(out, "2/s burst 4 (its own)") {
			t.Errorf("standing upstream:acme: exit %d, %q", code, out)
		}
		if code, _, errOut := f.run("", "policy", "set", "upstream:", "--rate", "1"); code != ExitUsage || !strings.Contains(errOut, "give the upstream a name") {
			t.Errorf("policy set upstream: (no name): exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("DefaultPolicy", func(t *testing.T) {
		code, out, errOut := f.run("", "policy", "set", "--default", "--rate", "3", "--burst", "6")
		if code != ExitOK || !strings.Contains(out, "default policy: 3/s burst 6") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		code, out, _ = f.run("", "policy", "show", "nobody")
		if code != ExitOK || !strings.Contains(out, "3/s burst 6 (the default policy") {
			t.Errorf("show of a tenant without a policy: exit %d, %q", code, out)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		code, out, errOut := f.run("", "policy", "delete", "acme")
		if code != ExitOK || !strings.Contains(out, "default") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if _, explicit, _ := l.GetPolicy(ctx, "acme"); explicit {
			t.Error("acme still has its own policy after delete")
		}
	})
}

func TestStandingAndStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	l := f.limiter()
	// One token per 1000 s: the bucket does not move during the test.
	if err := l.SetPolicy(ctx, "acme", throttle.Policy{Rate: 0.001, Burst: 5, Quota: 100, QuotaPeriod: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if r, err := l.AllowN(ctx, "acme", 3); err != nil || !r.Allowed {
		t.Fatalf("AllowN: %+v %v", r, err)
	}
	if err := l.Hold(ctx, "held", time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--tenant", "acme", "--type", "t", "--count", "2", "--queue", f.queue},
		{"--tenant", "acme", "--type", "t", "--in", "1h", "--queue", f.queue},
		{"--tenant", "tasks-only", "--type", "t", "--count", "4", "--queue", f.queue},
	} {
		if code, _, errOut := f.run("", args...); code != ExitOK {
			t.Fatalf("%q: exit %d, %s", args, code, errOut)
		}
	}

	t.Run("StandingJSON", func(t *testing.T) {
		code, out, errOut := f.run("", "standing", "acme", "--queues", f.queue, "--json")
		if code != ExitOK {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		var s struct {
			Tenant string
			Policy struct {
				Rate     float64
				Burst    int64
				Explicit bool
			}
			Tokens int64
			Quota  *struct {
				Limit, Used, Remaining int64
				ResetsIn               float64 `json:"resets_in_seconds"`
			}
			Tasks struct{ Pending, Scheduled, Retry int }
		}
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("stdout %q: %v", out, err)
		}
		if s.Tenant != "acme" || !s.Policy.Explicit || s.Policy.Burst != 5 || s.Tokens != 2 {
			t.Errorf("standing %+v, want acme's own policy with 2 of 5 tokens", s)
		}
		if s.Quota == nil || s.Quota.Limit != 100 || s.Quota.Used != 3 || s.Quota.Remaining != 97 || s.Quota.ResetsIn <= 0 || s.Quota.ResetsIn > 86400 {
			t.Errorf("quota %+v, want 3 of 100 used, resetting within a day", s.Quota)
		}
		if s.Tasks.Pending != 2 || s.Tasks.Scheduled != 1 || s.Tasks.Retry != 0 {
			t.Errorf("tasks %+v, want 2 pending and 1 scheduled", s.Tasks)
		}
	})

	t.Run("StandingSaysWhenASlowedTenantIsBack", func(t *testing.T) {
		if err := f.limiter().Backoff(ctx, "slowed", 0); err != nil {
			t.Fatal(err)
		}
		code, out, _ := f.run("", "standing", "slowed", "--queues", f.queue)
		if code != ExitOK || !strings.Contains(out, "rate now") || !strings.Contains(out, "of the policy's 10/s, slowed by its upstream's refusals (429); back in") {
			t.Errorf("exit %d, stdout:\n%s", code, out)
		}
	})

	t.Run("StandingCountsBookingsInTheQuota", func(t *testing.T) {
		l := f.limiter()
		if err := l.SetPolicy(ctx, "booker", throttle.Policy{Rate: 0.01, Burst: 1, Quota: 10}); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.DeletePolicy(ctx, "booker") }() // (the other views list every tenant with a policy)
		for _, job := range []string{"a", "b", "c"} {        // a runs now, b and c are booked
			if _, err := l.Reserve(ctx, throttle.Request{IDs: []string{"booker"}, N: 1, Ticket: job}); err != nil {
				t.Fatal(err)
			}
		}
		code, out, _ := f.run("", "standing", "booker", "--queues", f.queue)
		if code != ExitOK || !strings.Contains(out, "3 of 10 used (7 left), counting the bookings of 2 tasks waiting their turn") ||
			!strings.Contains(out, "booked ahead by 2 waiting task(s): a task enqueued now runs in") || strings.Contains(out, "next token") {
			t.Errorf("exit %d, stdout:\n%s", code, out)
		}
	})

	t.Run("StandingText", func(t *testing.T) {
		code, out, _ := f.run("", "standing", "held", "--queues", f.queue)
		if code != ExitOK || !strings.Contains(out, "paused     yes, 1h0m0s left (its upstream asked to wait) (held 1 times)") || !strings.Contains(out, "quota      none") ||
			!strings.Contains(out, "in flight  no limit") ||
			!strings.HasSuffix(out, ", maxmemory-policy noeviction\n") {
			t.Errorf("exit %d, stdout:\n%s", code, out)
		}
	})

	t.Run("StatusJSON", func(t *testing.T) {
		code, out, errOut := f.run("", "status", "--queues", f.queue, "--json")
		if code != ExitOK {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		var all []struct {
			Tenant string
			Paused bool
			Tasks  struct{ Pending, Scheduled int }
		}
		if err := json.Unmarshal([]byte(out), &all); err != nil {
			t.Fatalf("stdout %q: %v", out, err)
		}
		got := map[string]string{}
		for _, s := range all {
			got[s.Tenant] = strings.Join([]string{itoa(s.Tasks.Pending), itoa(s.Tasks.Scheduled)}, "/")
		}
		// acme has a policy and tasks, tasks-only only tasks; "held" has
		// neither a policy nor tasks, so status does not list it.
		want := map[string]string{"acme": "2/1", "tasks-only": "4/0"}
		if len(got) != len(want) || got["acme"] != want["acme"] || got["tasks-only"] != want["tasks-only"] {
			t.Errorf("status = %v, want %v", got, want)
		}
	})

	t.Run("StatusTable", func(t *testing.T) {
		code, out, _ := f.run("", "status", "--queues", f.queue)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != ExitOK || len(lines) != 5 || !strings.HasPrefix(lines[0], "TENANT") ||
			!strings.HasPrefix(lines[1], "acme ") || !strings.Contains(lines[1], "3/100") || !strings.HasPrefix(lines[2], "tasks-only ") ||
			lines[4] != "redis "+f.url+", maxmemory-policy noeviction" {
			t.Errorf("exit %d, table:\n%s", code, out)
		}
	})

	t.Run("StatusOfNamedTenants", func(t *testing.T) {
		code, out, _ := f.run("", "status", "held", "--queues", f.queue, "--json")
		if code != ExitOK || !strings.Contains(out, `"tenant":"held"`) || strings.Contains(out, "acme") {
			t.Errorf("exit %d, stdout %s; want held only", code, out)
		}
	})

	t.Run("BadUsage", func(t *testing.T) {
		for _, args := range [][]string{{"standing"}, {"standing", "a", "b"}, {"status", "bad\x01"}, {"standing", "--frob", "a"}} {
			if code, _, errOut := f.run("", args...); code != ExitUsage {
				t.Errorf("%q: exit %d, stderr %q; want 2", args, code, errOut)
			}
		}
	})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestQuotaCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	l := f.limiter()

	t.Run("ResetEnqueuesTheSchedulersTask", func(t *testing.T) {
		code, out, errOut := f.run("", "quota", "reset", "acme", "beta", "--queue", f.queue, "--json")
		if code != ExitOK {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		var res struct{ Type, ID, Queue string }
		if err := json.Unmarshal([]byte(out), &res); err != nil || res.Type != scheduler.TypeQuotaReset || res.Queue != f.queue {
			t.Fatalf("stdout %q (%v), want a %s task in %s", out, err, scheduler.TypeQuotaReset, f.queue)
		}
		ti, err := f.insp.GetTaskInfo(f.queue, res.ID)
		if err != nil {
			t.Fatal(err)
		}
		var r scheduler.Reset
		if err := json.Unmarshal(ti.Payload, &r); err != nil || strings.Join(r.Tenants, ",") != "acme,beta" || r.All {
			t.Errorf("payload %s (%v), want tenants acme, beta", ti.Payload, err)
		}
	})

	t.Run("AdjustEnqueuesTheSchedulersTask", func(t *testing.T) {
		q := f.queue + "-adj"
		code, out, errOut := f.run("", "quota", "adjust", "--all", "--quota", "5000", "--rate", "2.5", "--queue", q)
		if code != ExitOK || !strings.Contains(out, "every tenant") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		tasks := f.list(q, asynq.TaskStatePending)
		if len(tasks) != 1 || tasks[0].Type != scheduler.TypeQuotaAdjust {
			t.Fatalf("tasks %v, want one %s", tasks, scheduler.TypeQuotaAdjust)
		}
		var a scheduler.Adjust
		if err := json.Unmarshal(tasks[0].Payload, &a); err != nil {
			t.Fatal(err)
		}
		if !a.All || a.Quota == nil || *a.Quota != 5000 || a.Rate == nil || *a.Rate != 2.5 || a.Burst != nil || a.QuotaPeriod != nil {
			t.Errorf("payload %s, want all, quota 5000, rate 2.5 and nothing else", tasks[0].Payload)
		}
	})

	t.Run("ResetNowResetsDirectly", func(t *testing.T) {
		if err := l.SetPolicy(ctx, "now", throttle.Policy{Rate: 1000, Burst: 1000, Quota: 10}); err != nil {
			t.Fatal(err)
		}
		if r, err := l.AllowN(ctx, "now", 10); err != nil || !r.Allowed || r.QuotaRemaining != 0 {
			t.Fatalf("AllowN(10) = %+v, %v; want the quota used up", r, err)
		}
		code, out, errOut := f.run("", "quota", "reset", "now", "--now")
		if code != ExitOK || !strings.Contains(out, "tenant now") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if r, err := l.Peek(ctx, "now"); err != nil || r.QuotaRemaining != 10 {
			t.Errorf("after quota reset --now: %+v, %v; want 10 left", r, err)
		}
	})

	t.Run("TooSmallARateNamesTheSmallest", func(t *testing.T) {
		for _, args := range [][]string{
			{"policy", "set", "acme", "--rate", "1e-10", "--burst", "1"},
			{"quota", "adjust", "acme", "--rate", "1e-12", "--queue", f.queue + "-bad"},
		} {
			code, _, errOut := f.run("", args...)
			if code != ExitUsage || !strings.Contains(errOut, "1.1574074074074074e-06") {
				t.Errorf("%q: exit %d, stderr %q; want 2 and the smallest rate", args, code, errOut)
			}
		}
	})

	t.Run("BadUsageEnqueuesNothing", func(t *testing.T) {
		q := f.queue + "-bad"
		for _, args := range [][]string{
			{"quota"},
			{"quota", "frob"},
			{"quota", "reset", "--queue", q},
			{"quota", "reset", "a", "--all", "--queue", q},
			{"quota", "reset", "bad\x01id", "--queue", q},
			{"quota", "adjust", "a", "--queue", q},
			{"quota", "adjust", "a", "--rate", "-1", "--queue", q},
			{"quota", "adjust", "a", "--rate", "1e-12", "--queue", q},
			{"quota", "adjust", "--all", "--rate", "1e-10", "--burst", "1", "--queue", q},
			{"quota", "adjust", "a", "--quota-period", "1d", "--queue", q},
			{"quota", "adjust", "a", "--rate", "1", "--queue", ""},
		} {
			code, _, errOut := f.run("", args...)
			if code != ExitUsage || strings.Count(errOut, "\n") != 1 {
				t.Errorf("%q: exit %d, stderr %q; want 2 and one line", args, code, errOut)
			}
		}
		if n := f.size(q); n != 0 {
			t.Errorf("%d tasks enqueued by refused commands", n)
		}
	})
}

// TestUnhold: unhold lifts a tenant's pause and slowed rate at once, keeps
// its bookings, says when there was nothing to lift, and refuses bad ids
// as usage errors.
func TestUnhold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	l := f.limiter()
	if err := l.Backoff(ctx, "held", time.Hour); err != nil {
		t.Fatal(err)
	}
	if r, err := l.Reserve(ctx, throttle.Request{IDs: []string{"held"}, N: 1, Ticket: "job-1"}); err != nil || !r.OK || r.Delay == 0 {
		t.Fatalf("Reserve while held: %+v, %v; want a booking after the pause", r, err)
	}
	code, out, errOut := f.run("", "unhold", "held", "idle")
	if code != ExitOK || !strings.Contains(out, "held: pause lifted, it runs at its policy's rate again") ||
		!strings.Contains(out, "idle: no pause or slowed rate to lift") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	s, err := l.Standing(ctx, "held")
	if err != nil || s.HoldLeft != 0 || s.LearnedRate != 0 || s.Booked != 1 {
		t.Errorf("after unhold: %+v, %v; want no pause, the policy's rate, the booking kept", s, err)
	}
	code, out, _ = f.run("", "unhold", "held", "--json")
	if code != ExitOK || !strings.Contains(out, `"tenants":[{"tenant":"held","lifted":false}]`) {
		t.Errorf("--json again: exit %d, %s", code, out)
	}
	for _, args := range [][]string{{"unhold"}, {"unhold", ""}} {
		if code, _, errOut := f.run("", args...); code != ExitUsage {
			t.Errorf("%q: exit %d (%s), want %d", args, code, errOut, ExitUsage)
		}
	}
}
