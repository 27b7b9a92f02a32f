package tenantstatus

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func TestFromStanding(t *testing.T) {
	t.Parallel()
	quota := throttle.Policy{Rate: 1, Burst: 10, Quota: 100, QuotaPeriod: time.Hour}
	tests := []struct {
		name      string
		in        throttle.Standing
		wantNext  time.Duration
		wantQuota *Quota
		wantPause bool
	}{
		{"AllowedNoQuota",
			throttle.Standing{Policy: throttle.PerSecond(10), Result: throttle.Result{Allowed: true, Remaining: 9, QuotaRemaining: -1}},
			0, nil, false},
		{"EmptyBucket",
			throttle.Standing{Policy: throttle.PerSecond(10), Result: throttle.Result{Reason: throttle.ReasonRate, RetryAfter: 100 * time.Millisecond, QuotaRemaining: -1}},
			100 * time.Millisecond, nil, false},
		{"QuotaPartlyUsed",
			throttle.Standing{Policy: quota, Result: throttle.Result{Allowed: true, Remaining: 10, QuotaRemaining: 60, QuotaResetAfter: 20 * time.Minute}},
			0, &Quota{Limit: 100, Used: 40, Remaining: 60, ResetsIn: 20 * time.Minute}, false},
		{"QuotaUsedUpIsNotATokenWait",
			throttle.Standing{Policy: quota, Result: throttle.Result{Reason: throttle.ReasonQuota, Remaining: 10, RetryAfter: 20 * time.Minute, QuotaRemaining: 0}},
			0, &Quota{Limit: 100, Used: 100, Remaining: 0}, false},
		{"QuotaNotStartedYet",
			throttle.Standing{Policy: quota, Result: throttle.Result{Allowed: true, Remaining: 10, QuotaRemaining: -1}},
			0, &Quota{Limit: 100, Used: 0, Remaining: 100}, false},
		{"Paused",
			throttle.Standing{Policy: throttle.PerSecond(1), Holds: 2, Result: throttle.Result{Reason: throttle.ReasonPaused, RetryAfter: time.Minute, QuotaRemaining: -1}},
			time.Minute, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := FromStanding(tt.in, Tasks{Pending: 1})
			if s.NextTokenIn != tt.wantNext || s.Paused != tt.wantPause || s.Tasks.Pending != 1 || s.Holds != tt.in.Holds {
				t.Errorf("next %s paused %v holds %d tasks %+v; want next %s paused %v", s.NextTokenIn, s.Paused, s.Holds, s.Tasks, tt.wantNext, tt.wantPause)
			}
			switch {
			case (s.Quota == nil) != (tt.wantQuota == nil):
				t.Errorf("quota %+v, want %+v", s.Quota, tt.wantQuota)
			case s.Quota != nil && *s.Quota != *tt.wantQuota:
				t.Errorf("quota %+v, want %+v", *s.Quota, *tt.wantQuota)
			}
		})
	}
}

func TestStatusJSON(t *testing.T) {
	t.Parallel()
	s := Status{Tenant: "acme", Policy: throttle.Policy{Rate: 2, Burst: 4, Quota: 10, QuotaPeriod: 24 * time.Hour}, Explicit: true,
		Tokens: 3, FullIn: 500 * time.Millisecond, Quota: &Quota{Limit: 10, Used: 1, Remaining: 9, ResetsIn: 90 * time.Second}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"tenant":"acme","policy":{"rate":2,"burst":4,"quota":10,"quota_period":"24h0m0s","concurrency":0,"explicit":true},"tokens":3,` +
		`"next_token_in_seconds":0,"full_in_seconds":0.5,"paused":false,"hold_left_seconds":0,"learned_rate":0,"learned_full_in_seconds":0,"booked":0,` +
		`"holds":0,"in_flight":0,"waiting":{"for_their_turn":0,"for_quota_or_pause":0,"for_a_slot":0,` +
		`"by_cause":{"rate":0,"upstream":0,"quota":0,"hold":0,"concurrency":0,"outage":0,"invalid":0},"due_now":false,"next_due_in_seconds":0,"drain_in_seconds":0},` +
		`"quota":{"limit":10,"used":1,"remaining":9,"resets_in_seconds":90},` +
		`"tasks":{"pending":0,"scheduled":0,"retry":0,"active":0,"archived":0}}`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
	s.Quota = nil
	if b, _ := json.Marshal(s); !strings.Contains(string(b), `"quota":null`) {
		t.Errorf("JSON without a quota: %s, want \"quota\":null", b)
	}
}

func TestCollect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	q1, q2 := "q1-"+prefix, "q2-"+prefix
	client := asynq.NewClientFromRedisClient(rdb)
	defer client.Close()
	enqueue := func(tenant, queue string, opts ...asynq.Option) {
		t.Helper()
		h := map[string]string{}
		if tenant != "" {
			h[TenantHeader] = tenant
		}
		if _, err := client.Enqueue(asynq.NewTaskWithHeaders("t", nil, h, append(opts, asynq.Queue(queue))...)); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		enqueue("a", q1)
	}
	enqueue("a", q2, asynq.ProcessIn(time.Hour))
	enqueue("b", q2)
	enqueue("", q1) // no tenant header
	// the tenant named only in the payload, as the worker finds it; the
	// header wins over the payload
	for _, task := range []*asynq.Task{
		asynq.NewTask("t", []byte(`{"tenant": "b", "n": 1}`), asynq.Queue(q1)),
		asynq.NewTaskWithHeaders("t", []byte(`{"tenant": "b"}`), map[string]string{TenantHeader: "a"}, asynq.Queue(q1)),
	} {
		if _, err := client.Enqueue(task); err != nil {
			t.Fatal(err)
		}
	}
	l := throttle.New(rdb, throttle.WithPrefix(prefix))
	if err := l.SetPolicy(ctx, "c", throttle.PerMinute(6)); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	defer insp.Close()

	counts, err := CountTasks(ctx, insp, []string{q1, q2, "never-used-" + prefix})
	if err != nil {
		t.Fatal(err)
	}
	if counts["a"] != (Tasks{Pending: 4, Scheduled: 1}) || counts["b"] != (Tasks{Pending: 2}) || counts[""] != (Tasks{Pending: 1}) {
		t.Errorf("counts = %+v", counts)
	}

	all, err := Collect(ctx, l, insp, Options{Queues: []string{q1, q2}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range all {
		names = append(names, s.Tenant)
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Fatalf("tenants %v, want a, b (tasks) and c (policy), sorted, and no untenanted row", names)
	}
	if all[0].Tasks.Pending != 4 || all[2].Explicit != true || all[2].Policy != throttle.PerMinute(6) || all[0].Explicit {
		t.Errorf("statuses %+v", all)
	}

	one, err := Collect(ctx, l, insp, Options{Tenants: []string{"b"}, Queues: []string{q1, q2}})
	if err != nil || len(one) != 1 || one[0].Tenant != "b" || one[0].Tasks.Pending != 2 {
		t.Errorf("Collect(b) = %+v, %v", one, err)
	}
	if _, err := Collect(ctx, l, insp, Options{Tenants: []string{""}}); err == nil {
		t.Error("Collect with an empty tenant id: no error")
	}
}
