package worker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/shadowrec"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// A worker in shadow mode runs a backlog far above its tenant's allowance
// at once: every task runs, none is put back or archived, and it counts as
// would-be throttles exactly the tasks an enforcing worker throttles, in
// Stats, in the metrics, in its summary log and in Redis. Turned off, the
// same limits are enforced again.
func TestShadowModeRunsEveryTaskAndCountsWhatEnforcingThrottles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tenant := "shadow-" + uniq(t)
	// one token a minute after a burst of 5: the test sees no refill
	policies := map[string]throttle.Policy{tenant: {Rate: 1.0 / 60, Burst: 5}}
	const backlog, allowance = 30, 5

	shadow := setup(t, bundleConfig{policies: policies, opts: []worker.Option{worker.WithShadow(true)}, noStart: true})
	st, err := shadowrec.Read(ctx, shadow.rdb, shadow.prefix, tenant)
	if err != nil || st.Workers != 1 {
		t.Fatalf("before any task, Redis says %d workers in shadow (%v), want 1", st.Workers, err)
	}
	shadow.enqueue(t, tenant, backlog, asynq.MaxRetry(0))
	shadow.start(t)
	q := shadow.waitQueueDone(t, 20*time.Second)
	s := shadow.throttler.Stats()
	if n := shadow.runs.count(); n != backlog || q.Archived != 0 || q.Processed != backlog {
		t.Errorf("shadow: %d runs, queue %d processed, %d archived; want all %d run and processed", n, q.Processed, q.Archived, backlog)
	}
	if s.Allowed != allowance || s.ShadowThrottled != backlog-allowance || s.Throttled != 0 || s.Requeued != 0 || s.Archived != 0 || s.ShadowArchived != 0 {
		t.Errorf("shadow stats %+v; want %d allowed, %d would-be throttles, nothing throttled, put back or archived", s, allowance, backlog-allowance)
	}
	got := series(t, shadow.reg)
	who := `tenant="` + tenant + `",type="job"`
	for name, want := range map[string]float64{
		`quotaq_worker_shadow_throttled_total{reason="rate",` + who + `}`: backlog - allowance,
		`quotaq_worker_allowed_total{` + who + `,via="now"}`:              allowance,
		`quotaq_worker_shadow_mode{}`:                                     1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	for name, v := range got {
		if (strings.HasPrefix(name, "quotaq_worker_requeued_total") || strings.HasPrefix(name, "quotaq_worker_throttled_total")) && v != 0 {
			t.Errorf("%s = %v in shadow mode, want 0", name, v)
		}
	}

	// nothing booked ahead: the next token is due within its minute, as if
	// only the tasks admitted had run
	if sd, err := shadow.limiter.Standing(ctx, tenant); err != nil || sd.Booked != 0 || sd.RetryAfter > time.Minute {
		t.Errorf("after shadow: %d tokens booked, next in %s (%v); want none booked, next within a minute", sd.Booked, sd.RetryAfter, err)
	}

	// enforcing, on limits of its own, throttles the same tasks
	enforcing := setup(t, bundleConfig{policies: policies})
	enforcing.enqueue(t, tenant, backlog, asynq.MaxRetry(0))
	waitFor(t, 20*time.Second, "every task decided once", func() bool {
		e := enforcing.throttler.Stats()
		return e.Allowed+e.Throttled >= backlog
	})
	if e := enforcing.throttler.Stats(); e.Throttled != s.ShadowThrottled || e.Allowed != s.Allowed {
		t.Errorf("enforcing: %d allowed, %d throttled; shadow counted %d allowed, %d would-be throttles", e.Allowed, e.Throttled, s.Allowed, s.ShadowThrottled)
	}

	// stopped, the shadow worker leaves Redis its counts, and logs a summary
	if err := shadow.throttler.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = shadowrec.Read(ctx, shadow.rdb, shadow.prefix, tenant)
	if err != nil || st.Workers != 0 || st.Throttled[tenant] != backlog-allowance || st.Since.IsZero() {
		t.Errorf("after Close, Redis says %+v (%v); want no worker in shadow, %d would-be throttles of %q", st, err, backlog-allowance, tenant)
	}
	if logs := shadow.logs.String(); !strings.Contains(logs, "would have throttled tasks") || !strings.Contains(logs, `throttled=25 by_reason="rate=25"`) {
		t.Errorf("no summary of 25 would-be throttles in the log:\n%s", logs)
	}

	// shadow off, on the same limits: enforced again
	off := setup(t, bundleConfig{prefix: shadow.prefix})
	off.enqueue(t, tenant, 3)
	waitFor(t, 20*time.Second, "3 tasks put back", func() bool { return off.throttler.Stats().Requeued == 3 })
	if n := off.runs.count(); n != 0 {
		t.Errorf("shadow off: %d tasks ran on an empty bucket, want 0", n)
	}
}

// Tasks enforcing mode would archive run in shadow mode, counted by reason.
func TestShadowModeRunsTasksEnforcingWouldArchive(t *testing.T) {
	t.Parallel()
	tenant := "shadow-" + uniq(t)
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{tenant: {Rate: 100, Burst: 2}},
		opts: []worker.Option{worker.WithShadow(true), worker.WithUntenanted("")}})
	for _, h := range []map[string]string{
		{worker.TenantHeader: tenant, worker.CostHeader: "3"},   // above the burst
		{worker.TenantHeader: tenant, worker.CostHeader: "two"}, // not a number
		{}, // no tenant, and tasks without one are refused
	} {
		if _, err := b.client.Enqueue(asynq.NewTaskWithHeaders("job", nil, h), asynq.Queue(b.queue), asynq.MaxRetry(0)); err != nil {
			t.Fatal(err)
		}
	}
	q := b.waitQueueDone(t, 20*time.Second)
	if n := b.runs.count(); n != 3 || q.Archived != 0 {
		t.Errorf("%d runs, %d archived; want 3 runs, none archived", n, q.Archived)
	}
	got := series(t, b.reg)
	for _, reason := range []string{"cost_above_burst", "invalid_cost", "no_tenant"} {
		if name := `quotaq_worker_shadow_archived_total{reason="` + reason + `",type="job"}`; got[name] != 1 {
			t.Errorf("%s = %v, want 1", name, got[name])
		}
	}
	if s := b.throttler.Stats(); s.ShadowArchived != 3 || s.Archived != 0 {
		t.Errorf("stats %+v, want 3 would-be archives, none archived", s)
	}
}

// An upstream's 429 in shadow mode holds nothing: the tenant is not held,
// the task is not put back; it is counted, and asynq retries it as it
// would without quotaq.
func TestShadowModeDoesNotHoldOnRetryAfter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tenant := "shadow-" + uniq(t)
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{tenant: {Rate: 100, Burst: 10}},
		opts: []worker.Option{worker.WithShadow(true)},
		handler: func(context.Context, *asynq.Task) error {
			return worker.RetryAfter(time.Hour, errors.New("429 Too Many Requests"))
		}})
	ids := b.enqueue(t, tenant, 1, asynq.MaxRetry(3))
	waitFor(t, 20*time.Second, "the task in the retry set", func() bool {
		info, err := b.inspector.GetTaskInfo(b.queue, ids[0])
		return err == nil && info.State == asynq.TaskStateRetry
	})
	s := b.throttler.Stats()
	if s.ShadowThrottled != 1 || s.ShadowHoldsSkipped != 1 || s.RetryAfter != 1 || s.Requeued != 0 {
		t.Errorf("stats %+v; want 1 would-be throttle, 1 hold skipped, 1 RetryAfter, nothing put back", s)
	}
	if n, err := b.limiter.HoldCount(ctx, tenant); err != nil || n != 0 {
		t.Errorf("tenant held %d times (%v), want 0", n, err)
	}
	got := series(t, b.reg)
	who := `tenant="` + tenant + `",type="job"`
	if v := got[`quotaq_worker_shadow_throttled_total{reason="upstream",`+who+`}`]; v != 1 {
		t.Errorf("shadow_throttled_total upstream = %v, want 1", v)
	}
	if v := got[`quotaq_worker_shadow_holds_skipped_total{`+who+`}`]; v != 1 {
		t.Errorf("shadow_holds_skipped_total = %v, want 1", v)
	}
	if errs := b.errs.list(); len(errs) != 1 {
		t.Errorf("asynq's ErrorHandler got %v, want the handler's error once", errs)
	}
}

// In shadow mode a tenant's concurrency limit is decided as in enforcing
// mode: the tasks admitted hold a slot while they run and free it after;
// the others run anyway, counted.
func TestShadowModeTakesAndFreesSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tenant := "shadow-" + uniq(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free)
	var running atomic.Int32
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{tenant: {Rate: 100, Burst: 10, Concurrency: 1}},
		opts: []worker.Option{worker.WithShadow(true)},
		handler: func(context.Context, *asynq.Task) error {
			running.Add(1)
			<-release
			return nil
		}})
	b.enqueue(t, tenant, 3)
	waitFor(t, 10*time.Second, "all three tasks running at once", func() bool { return running.Load() == 3 })
	standing, err := b.limiter.Standing(ctx, tenant)
	if err != nil || standing.InFlight != 1 {
		t.Errorf("while 3 run: %d in flight (%v), want 1 slot held", standing.InFlight, err)
	}
	free()
	b.waitQueueDone(t, 20*time.Second)
	waitFor(t, 10*time.Second, "the slot freed", func() bool {
		s, err := b.limiter.Standing(ctx, tenant)
		return err == nil && s.InFlight == 0
	})
	if v := series(t, b.reg)[`quotaq_worker_shadow_throttled_total{reason="concurrency",tenant="`+tenant+`",type="job"}`]; v != 2 {
		t.Errorf("would-be throttles for a slot: %v, want 2", v)
	}
}
