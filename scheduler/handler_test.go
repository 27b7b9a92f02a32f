package scheduler

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/internal/wait"
	"github.com/quotaq/quotaq/throttle"
)

type handlerBundle struct {
	rdb     *redis.Client
	prefix  string
	l       *throttle.Limiter // the handlers' limiter
	running *throttle.Limiter // another process's limiter, made before any change
	h       *handlers
}

func setupHandlers(t *testing.T, opts ...Option) *handlerBundle {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	b := &handlerBundle{
		rdb:    rdb,
		prefix: prefix,
		l:      throttle.New(rdb, throttle.WithPrefix(prefix)),
		// Reads the stored default on every decision, so the test need
		// not wait out a refresh interval.
		running: throttle.New(rdb, throttle.WithPrefix(prefix), throttle.WithPolicyRefresh(time.Nanosecond)),
	}
	opts = append([]Option{WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)
	b.h = newHandlers(b.l, opts)
	return b
}

// task returns the task of the only entry of yaml firing at fire.
func entryTask(t *testing.T, yaml string, fire time.Time) (*asynq.Task, Entry) {
	t.Helper()
	s := mustParse(t, yaml)
	e := s.Entries[0]
	task, err := e.Task(fire)
	if err != nil {
		t.Fatal(err)
	}
	return task, e
}

func (b *handlerBundle) setPolicy(t *testing.T, tenant string, p throttle.Policy) {
	t.Helper()
	if err := b.l.SetPolicy(context.Background(), tenant, p); err != nil {
		t.Fatal(err)
	}
}

// exhaust spends tenant's quota on the running limiter and checks that the
// next decision is refused by the quota.
func (b *handlerBundle) exhaust(t *testing.T, tenant string, quota int) throttle.Result {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < quota; i++ {
		if r, err := b.running.Allow(ctx, tenant); err != nil || !r.Allowed {
			t.Fatalf("%s: decision %d: %v, %v; want admitted", tenant, i+1, r, err)
		}
	}
	r, err := b.running.Allow(ctx, tenant)
	if err != nil || r.Allowed || r.Reason != throttle.ReasonQuota {
		t.Fatalf("%s: decision past the quota = %v, %v; want refused by the quota", tenant, r, err)
	}
	return r
}

func TestResetHandler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	quota := throttle.Policy{Rate: 1000, Burst: 1000, Quota: 3} // until reset

	t.Run("ListedTenantsGetANewPeriodAndTheNextResetTime", func(t *testing.T) {
		t.Parallel()
		b := setupHandlers(t)
		for _, id := range []string{"acme", "globex"} {
			b.setPolicy(t, id, quota)
			b.exhaust(t, id, 3)
		}
		now := time.Now().UTC()
		midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		task, _ := entryTask(t, `
entries:
  - name: daily
    cron: "0 0 * * *"
    action: reset
    tenant: acme
`, midnight)
		if err := b.h.reset(ctx, task); err != nil {
			t.Fatal(err)
		}
		// The running limiter's next decision sees the new period...
		r, err := b.running.Allow(ctx, "acme")
		if err != nil || !r.Allowed || r.QuotaRemaining != 2 {
			t.Fatalf("acme after the reset: %v, %v; want admitted with 2 left", r, err)
		}
		// ...and once it is used up, says to come back at the next reset.
		r = b.exhaust(t, "acme", 2)
		untilNext := time.Until(midnight.Add(24 * time.Hour))
		if d := r.RetryAfter - untilNext; d < -time.Minute || d > time.Minute {
			t.Errorf("acme refused with RetryAfter %s, want about %s (the next midnight)", r.RetryAfter, untilNext)
		}
		// A tenant not listed keeps its used-up quota.
		if r, err := b.running.Allow(ctx, "globex"); err != nil || r.Allowed {
			t.Errorf("globex, not listed: %v, %v; want still refused", r, err)
		}
	})

	t.Run("AllResetsEveryTenant", func(t *testing.T) {
		t.Parallel()
		b := setupHandlers(t)
		ids := []string{"a", "b", "c"}
		for _, id := range ids {
			b.setPolicy(t, id, quota)
			b.exhaust(t, id, 3)
		}
		task, _ := entryTask(t, resetAllYAML, mustTime(t, "2026-03-01T00:00:00Z"))
		if err := b.h.reset(ctx, task); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if r, err := b.running.Allow(ctx, id); err != nil || !r.Allowed {
				t.Errorf("%s after reset all: %v, %v; want admitted", id, r, err)
			}
		}
	})

	t.Run("AllRecordsTheNextResetForEveryTenant", func(t *testing.T) {
		t.Parallel()
		b := setupHandlers(t)
		b.setPolicy(t, "a", quota)
		next := time.Now().Add(time.Hour)
		task, err := NewResetTask(Reset{All: true, NextReset: next})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.h.reset(ctx, task); err != nil {
			t.Fatal(err)
		}
		// a tenant that uses its quota up after the reset is told to come
		// back at the next one, not polled every minute
		r := b.exhaust(t, "a", 3)
		if r.RetryAfter < 59*time.Minute || r.RetryAfter > time.Hour {
			t.Fatalf("RetryAfter %s after a reset-all with the next one an hour ahead; want about 1h", r.RetryAfter)
		}
	})

	t.Run("ByHand", func(t *testing.T) {
		t.Parallel()
		b := setupHandlers(t)
		b.setPolicy(t, "acme", quota)
		b.exhaust(t, "acme", 3)
		task, err := NewResetTask(Reset{Tenants: []string{"acme"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.h.reset(ctx, task); err != nil {
			t.Fatal(err)
		}
		if r, err := b.running.Allow(ctx, "acme"); err != nil || !r.Allowed {
			t.Errorf("acme after a manual reset: %v, %v; want admitted", r, err)
		}
	})
}

func TestAdjustHandler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("OneTenantSeenOnTheNextDecision", func(t *testing.T) {
		t.Parallel()
		b := setupHandlers(t)
		b.setPolicy(t, "acme", throttle.Policy{Rate: 1, Burst: 1, Quota: 100})
		if r, _ := b.running.Allow(ctx, "acme"); !r.Allowed {
			t.Fatal("first decision refused")
		}
		if r, _ := b.running.Allow(ctx, "acme"); r.Allowed {
			t.Fatal("second decision admitted with burst 1")
		}
		task, _ := entryTask(t, `
entries:
  - name: night
    cron: "0 22 * * *"
    action: adjust
    tenant: acme
    burst: 10
`, mustTime(t, "2026-03-01T22:00:00Z"))
		if err := b.h.adjust(ctx, task); err != nil {
			t.Fatal(err)
		}
		r, err := b.running.Allow(ctx, "acme")
		if err != nil || !r.Allowed || r.Remaining < 7 {
			t.Fatalf("decision right after the adjustment: %v, %v; want admitted from a burst of 10", r, err)
		}
		p, explicit, err := b.running.GetPolicy(ctx, "acme")
		if want := (throttle.Policy{Rate: 1, Burst: 10, Quota: 100}); err != nil || !explicit || p != want {
			t.Errorf("policy = %+v (explicit %v, %v), want %+v: only burst changes", p, explicit, err, want)
		}
	})

	t.Run("AllSetsTheDefaultAndEveryExplicitPolicy", func(t *testing.T) {
		t.Parallel()
		b := setupHandlers(t)
		b.setPolicy(t, "acme", throttle.Policy{Rate: 5, Burst: 5})
		b.setPolicy(t, "globex", throttle.Policy{Rate: 7, Burst: 7, Quota: 100, QuotaPeriod: 24 * time.Hour})
		if _, err := b.running.Allow(ctx, "nobody"); err != nil { // caches the old default
			t.Fatal(err)
		}
		task, _ := entryTask(t, `
entries:
  - name: plan
    cron: "0 0 1 * *"
    action: adjust
    all: true
    burst: 50
    quota: 1000
`, mustTime(t, "2026-03-01T00:00:00Z"))
		if err := b.h.adjust(ctx, task); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[string]throttle.Policy{
			"nobody": {Rate: 10, Burst: 50, Quota: 1000}, // the default, PerSecond(10) before
			"acme":   {Rate: 5, Burst: 50, Quota: 1000},
			"globex": {Rate: 7, Burst: 50, Quota: 1000, QuotaPeriod: 24 * time.Hour},
		} {
			p, _, err := b.running.GetPolicy(ctx, id)
			if err != nil || p != want {
				t.Errorf("%s: policy %+v (%v), want %+v", id, p, err, want)
			}
		}
		r, err := b.running.Allow(ctx, "nobody")
		if err != nil || !r.Allowed || r.QuotaRemaining != 999 {
			t.Errorf("a default tenant's next decision: %v, %v; want admitted with 999 of the new quota left", r, err)
		}
	})

	t.Run("InvalidForOneTenantChangesNothing", func(t *testing.T) {
		t.Parallel()
		b := setupHandlers(t)
		slow := throttle.Policy{Rate: 0.00001, Burst: 1}
		fast := throttle.Policy{Rate: 100, Burst: 100}
		b.setPolicy(t, "fast", fast)
		b.setPolicy(t, "slow", slow)
		task, _ := entryTask(t, `
entries:
  - name: plan
    cron: "0 0 1 * *"
    action: adjust
    all: true
    burst: 100
`, mustTime(t, "2026-03-01T00:00:00Z"))
		err := b.h.adjust(ctx, task)
		if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, throttle.ErrInvalidPolicy) {
			t.Fatalf("adjust = %v, want a SkipRetry error wrapping throttle.ErrInvalidPolicy", err)
		}
		for id, want := range map[string]throttle.Policy{"slow": slow, "fast": fast, "nobody": throttle.PerSecond(10)} {
			if p, _, _ := b.running.GetPolicy(ctx, id); p != want {
				t.Errorf("%s: policy %+v, want it unchanged %+v", id, p, want)
			}
		}
	})
}

func TestHandlersRejectBadPayloads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupHandlers(t)
	noRedis := newHandlers(b.l, nil)
	tests := []struct {
		name string
		run  func() error
	}{
		{"ResetNotJSON", func() error { return b.h.reset(ctx, asynq.NewTask(TypeQuotaReset, []byte("{"))) }},
		{"ResetNoTenants", func() error { return b.h.reset(ctx, asynq.NewTask(TypeQuotaReset, []byte(`{}`))) }},
		{"ResetBadTenant", func() error {
			return b.h.reset(ctx, asynq.NewTask(TypeQuotaReset, []byte(`{"tenants":["a\u0000"]}`)))
		}},
		{"AdjustNegativeRate", func() error {
			return b.h.adjust(ctx, asynq.NewTask(TypeQuotaAdjust, []byte(`{"tenants":["a"],"rate":-1}`)))
		}},
		// an adaptive step enqueued by an older version: retired, archived
		{"AdaptiveRetired", func() error {
			return noRedis.adjust(ctx, asynq.NewTask(TypeQuotaAdjust, []byte(`{"tenants":["t"],"adaptive":{"min_rate":1,"max_rate":2,"step":1,"factor":0.5}}`)))
		}},
	}
	for _, tt := range tests {
		if err := tt.run(); !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("%s: err = %v, want a SkipRetry error", tt.name, err)
		}
	}
}

func TestNewTasksValidate(t *testing.T) {
	t.Parallel()
	neg := -1.0
	if _, err := NewResetTask(Reset{}); !errors.Is(err, ErrBadField) {
		t.Errorf("NewResetTask(no tenants) = %v, want ErrBadField", err)
	}
	if _, err := NewAdjustTask(Adjust{All: true, Rate: &neg}); !errors.Is(err, ErrBadField) {
		t.Errorf("NewAdjustTask(rate -1) = %v, want ErrBadField", err)
	}
	if task, err := NewResetTask(Reset{All: true}); err != nil || task.Type() != TypeQuotaReset || string(task.Payload()) != `{"all":true}` {
		t.Errorf("NewResetTask(all) = %v %s, %v", task.Type(), task.Payload(), err)
	}
	if got, want := TaskID("nightly", mustTime(t, "2026-01-01T00:00:00+01:00")), "quotaq:schedule:nightly:1767222000"; got != want {
		t.Errorf("TaskID = %q, want %q", got, want)
	}
}

// The whole path: a Scheduler on a fake clock fires, an asynq server runs
// the registered handler, and a running limiter admits again.
func TestScheduledResetReachesARunningLimiter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupHandlers(t)
	env := newAsynqEnv(t)
	b.setPolicy(t, "acme", throttle.Policy{Rate: 1000, Burst: 1000, Quota: 2})
	b.exhaust(t, "acme", 2)

	mux := asynq.NewServeMux()
	RegisterHandlers(mux, b.l)
	srv := asynq.NewServer(env.connOpt, asynq.Config{
		Concurrency: 1, Queues: map[string]int{env.queue: 1},
		ShutdownTimeout: time.Second, LogLevel: asynq.FatalLevel,
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	s := mustParse(t, `
entries:
  - name: hourly
    cron: "0 * * * *"
    action: reset
    tenant: acme
    catch_up: 0s
`)
	clk := newFakeClock(mustTime(t, "2026-03-02T00:59:00Z"))
	sc := New(env.client(t), s, WithQueue(env.queue), WithClock(clk))
	sc.Start()
	t.Cleanup(func() { waitDone(t, sc.Stop()) })
	wait.For(t, 20*time.Second, "the loop to wait", func() bool { return len(clk.Waiters()) == 1 })
	if r, _ := b.running.Peek(ctx, "acme"); r.Allowed {
		t.Fatal("admitted before the reset")
	}
	clk.Set(mustTime(t, "2026-03-02T01:00:00Z"))
	wait.For(t, 20*time.Second, "the reset to reach the limiter", func() bool {
		r, err := b.running.Peek(ctx, "acme")
		return err == nil && r.Allowed
	})
	ti, err := env.inspector.GetTaskInfo(env.queue, TaskID("hourly", mustTime(t, "2026-03-02T01:00:00Z")))
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, 20*time.Second, "the task to complete", func() bool {
		ti, err = env.inspector.GetTaskInfo(env.queue, ti.ID)
		return err == nil && ti.State == asynq.TaskStateCompleted
	})
}

// Tasks that waited for a reset come back when it is due (the handler
// recorded it), and after it the bucket spreads them out: they do not all
// run at once.
func TestAfterAResetWaitingTasksAreSpreadByTheBucket(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupHandlers(t)
	b.setPolicy(t, "acme", throttle.Policy{Rate: 1000, Burst: 1000, Quota: 5})
	b.exhaust(t, "acme", 5)
	b.setPolicy(t, "acme", throttle.Policy{Rate: 10, Burst: 2, Quota: 5}) // 100ms a token

	now := time.Now().UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	task, _ := entryTask(t, `
entries:
  - name: daily
    cron: "0 0 * * *"
    action: reset
    tenant: acme
`, midnight)
	if err := b.h.reset(ctx, task); err != nil {
		t.Fatal(err)
	}
	// Eight throttled tasks come back at once and book their tokens.
	var due []time.Time
	for i := 0; i < 8; i++ {
		sent := time.Now()
		r, err := b.running.ReserveN(ctx, "acme", 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK {
			if i < 5 {
				t.Fatalf("task %d refused with %d of the quota of 5 used: %+v", i, i, r)
			}
			untilNext := time.Until(midnight.Add(24 * time.Hour))
			if d := r.Delay - untilNext; d < -time.Minute || d > time.Minute {
				t.Errorf("task %d, past the quota: told to wait %s, want about %s (the next reset)", i, r.Delay, untilNext)
			}
			continue
		}
		due = append(due, sent.Add(r.Delay))
	}
	if len(due) != 5 {
		t.Fatalf("%d tasks booked, want the quota's 5", len(due))
	}
	// The burst of 2 runs now; the others one interval (100ms) apart.
	for i := 2; i < len(due); i++ {
		if gap := due[i].Sub(due[i-1]); gap < 50*time.Millisecond {
			t.Errorf("task %d is due %s after task %d, want about 100ms: not spread by the bucket", i, gap, i-1)
		}
	}
}
