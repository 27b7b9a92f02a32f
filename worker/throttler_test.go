package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/internal/wait"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// testBundle is one test's worker: a Throttler on the package's
// redis-server, an asynq server on a queue no other test uses, and what the
// handler saw.
type testBundle struct {
	rdb       *redis.Client
	limiter   *throttle.Limiter
	throttler *worker.Throttler
	reg       *prometheus.Registry
	prefix    string // the limiter's key prefix
	queue     string
	client    *asynq.Client
	inspector *asynq.Inspector
	logs      *wait.Buffer
	runs      *runLog
	errs      *errorLog
	start     func(t testing.TB) // starts the asynq server
	stop      func()             // stops it (start's cleanup stops it too)
}

type bundleConfig struct {
	policies map[string]throttle.Policy
	opts     []worker.Option
	handler  func(ctx context.Context, task *asynq.Task) error // nil: succeed
	asynqCfg asynq.Config
	noStart  bool   // the test calls b.start itself
	prefix   string // the limiter's prefix, to share another bundle's limits; "": a new one
}

func setup(t testing.TB, cfg bundleConfig) *testBundle {
	t.Helper()
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	lp := prefix
	if cfg.prefix != "" {
		lp = cfg.prefix
	}
	b := &testBundle{
		rdb:       rdb,
		limiter:   throttle.New(rdb, throttle.WithPrefix(lp)),
		prefix:    lp,
		queue:     "q-" + prefix,
		client:    asynq.NewClientFromRedisClient(rdb),
		inspector: asynq.NewInspectorFromRedisClient(rdb),
		logs:      &wait.Buffer{},
		runs:      &runLog{},
		errs:      &errorLog{},
	}
	for tenant, p := range cfg.policies {
		if err := b.limiter.SetPolicy(ctx, tenant, p); err != nil {
			t.Fatalf("set policy of %q: %v", tenant, err)
		}
	}
	reg := prometheus.NewRegistry()
	m, err := worker.NewMetrics(reg, true)
	if err != nil {
		t.Fatal(err)
	}
	b.reg = reg
	logger := slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	opts := append([]worker.Option{worker.WithLogger(logger), worker.WithMetrics(m)}, cfg.opts...)
	b.throttler = worker.New(b.limiter, rdb, opts...)

	acfg := cfg.asynqCfg
	acfg.Queues = map[string]int{b.queue: 1}
	if acfg.Concurrency == 0 {
		acfg.Concurrency = 8
	}
	acfg.TaskCheckInterval = 50 * time.Millisecond
	acfg.LogLevel = asynq.WarnLevel
	acfg.ErrorHandler = b.errs
	srv := asynq.NewServerFromRedisClient(rdb, b.throttler.ServerConfig(acfg))
	mux := asynq.NewServeMux()
	mux.Use(b.throttler.Middleware)
	mux.HandleFunc("job", func(ctx context.Context, task *asynq.Task) error {
		b.runs.add(ctx, task)
		if cfg.handler != nil {
			return cfg.handler(ctx, task)
		}
		return nil
	})
	t.Cleanup(func() { _ = b.throttler.Close() })
	b.start = func(t testing.TB) {
		t.Helper()
		if err := srv.Start(mux); err != nil {
			t.Fatal(err)
		}
		b.stop = sync.OnceFunc(srv.Shutdown)
		t.Cleanup(b.stop)
	}
	if !cfg.noStart {
		b.start(t)
	}
	return b
}

// enqueue puts n "job" tasks of tenant in b's queue (tenant in the header)
// and returns their ids.
func (b *testBundle) enqueue(t testing.TB, tenant string, n int, opts ...asynq.Option) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := range n {
		task := asynq.NewTaskWithHeaders("job", fmt.Appendf(nil, `{"i":%d}`, i), map[string]string{worker.TenantHeader: tenant})
		info, err := b.client.Enqueue(task, append([]asynq.Option{asynq.Queue(b.queue)}, opts...)...)
		if err != nil {
			t.Fatalf("enqueue: %v", err)
		}
		ids = append(ids, info.ID)
	}
	return ids
}

// waitQueueDone polls until b's queue has nothing pending, active,
// scheduled or retrying, and returns its stats.
func (b *testBundle) waitQueueDone(t testing.TB, timeout time.Duration) *asynq.QueueInfo {
	t.Helper()
	var q *asynq.QueueInfo
	waitFor(t, timeout, "the queue to drain", func() bool {
		var err error
		q, err = b.inspector.GetQueueInfo(b.queue)
		return err == nil && q.Pending == 0 && q.Active == 0 && q.Scheduled == 0 && q.Retry == 0
	})
	return q
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	wait.For(t, timeout, what, cond)
}

// run is one handler call.
type run struct {
	id      string
	tenant  string
	retried int
	at      time.Time
}

type runLog struct {
	mu   sync.Mutex
	runs []run
}

func (r *runLog) add(ctx context.Context, task *asynq.Task) {
	id, _ := asynq.GetTaskID(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, run{id: id, tenant: task.Headers()[worker.TenantHeader], retried: retried, at: time.Now()})
}

func (r *runLog) list() []run {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]run(nil), r.runs...)
}

func (r *runLog) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.runs)
}

// errorLog is an asynq ErrorHandler that records what it is given.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (e *errorLog) HandleError(_ context.Context, _ *asynq.Task, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, err)
}

func (e *errorLog) list() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.errs...)
}

// TestTenantsGetTheirRateAndNothingIsLost: three tenants with different
// rates and a backlog each, half the tasks MaxRetry(0). Every task runs
// exactly once, nothing is archived or failed, retry counts stay 0, each
// tenant runs no more than burst + rate × elapsed and at least 90 % of it,
// and no task is dequeued only to be throttled again.
func TestTenantsGetTheirRateAndNothingIsLost(t *testing.T) {
	t.Parallel()
	tenants := []struct {
		id     string
		policy throttle.Policy
		tasks  int
	}{
		{"slow", throttle.Policy{Rate: 20, Burst: 5}, 5 + 20*3},
		{"mid", throttle.Policy{Rate: 35, Burst: 5}, 5 + 35*3},
		{"fast", throttle.Policy{Rate: 50, Burst: 10}, 10 + 50*3},
	}
	policies := map[string]throttle.Policy{}
	for _, tn := range tenants {
		policies[tn.id] = tn.policy
	}
	b := setup(t, bundleConfig{policies: policies, asynqCfg: asynq.Config{Concurrency: 10}, noStart: true})

	// Enqueue round-robin, as tenants' tasks arrive mixed: each tenant's
	// first decision comes at the start, when its bucket is full. Every
	// other task is MaxRetry(0).
	want := map[string]bool{}
	total := 0
	for k := 0; ; k++ {
		added := false
		for i, tn := range tenants {
			if k >= tn.tasks {
				continue
			}
			opt := asynq.MaxRetry(0)
			if k%2 == 1 {
				opt = asynq.MaxRetry(3 + i)
			}
			want[b.enqueue(t, tn.id, 1, opt)[0]] = true
			total++
			added = true
		}
		if !added {
			break
		}
	}
	start := time.Now() // every bucket is full: no decision has been made yet
	b.start(t)
	q := b.waitQueueDone(t, 30*time.Second)

	runs := b.runs.list()
	seen := map[string]int{}
	for _, r := range runs {
		seen[r.id]++
		if r.retried != 0 {
			t.Errorf("task %s ran with retry count %d, want 0", r.id, r.retried)
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("task %s ran %d times, want exactly once", id, seen[id])
		}
	}
	if len(runs) != total {
		t.Errorf("%d runs, want %d", len(runs), total)
	}
	if q.Archived != 0 || q.Failed != 0 || q.Processed != total {
		t.Errorf("asynq stats: archived=%d failed=%d processed=%d, want 0 0 %d", q.Archived, q.Failed, q.Processed, total)
	}

	for _, tn := range tenants {
		var at []time.Time
		for _, r := range runs {
			if r.tenant == tn.id {
				at = append(at, r.at)
			}
		}
		sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
		// Never more than the bucket allows: the k-th run (1-based) must
		// come no earlier than when burst + rate × elapsed reaches k.
		// (Decisions precede runs, so runs can only be later.)
		for k, ts := range at {
			allowed := float64(tn.policy.Burst) + tn.policy.Rate*ts.Sub(start).Seconds()
			if float64(k+1) > allowed+1 { // +1: the limiter's clock starts a hair before ours
				t.Errorf("tenant %s: %d runs by %s, the limit allows %.1f", tn.id, k+1, ts.Sub(start), allowed)
				break
			}
		}
		last := at[len(at)-1]
		allowed := float64(tn.policy.Burst) + tn.policy.Rate*last.Sub(start).Seconds()
		if got := float64(len(at)); got < 0.9*allowed {
			t.Errorf("tenant %s: %d runs in %s, under 90%% of the %.1f the limit allows", tn.id, len(at), last.Sub(start), allowed)
		}
		t.Logf("tenant %s: %d runs in %s: %.0f%% of the limit", tn.id, len(at), last.Sub(start).Round(time.Millisecond), 100*float64(len(at))/allowed)
	}

	st := b.throttler.Stats()
	t.Logf("stats: %+v", st)
	if st.Rethrottled != 0 {
		t.Errorf("%d dequeues were throttled again, want 0 (every throttled task holds a booking)", st.Rethrottled)
	}
	if st.Throttled == 0 || st.Requeued+st.WaitedInProcess != st.Throttled || st.Allowed != int64(total) || st.Archived != 0 {
		t.Errorf("stats %+v: want throttles, each re-queued or waited in process, %d allowed, none archived", st, total)
	}
	if n := b.counter(t, "quotaq_worker_rethrottled_total"); n != 0 {
		t.Errorf("rethrottled metric %v, want 0", n)
	}
	// A throttle is not an error anywhere a user looks.
	if errs := b.errs.list(); len(errs) != 0 {
		t.Errorf("ErrorHandler got %d errors, first %v; want none", len(errs), errs[0])
	}
	if logs := b.logs.String(); strings.Contains(logs, "revoke task") || strings.Contains(logs, "Could not remove") {
		t.Errorf("asynq's revoke warnings reached the log:\n%s", logs)
	}
}

// counter sums the series of counter name whose labels include the given
// name, value pairs.
func (b *testBundle) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestTasksOnTheirLastAttemptAreNotLost: MaxRetry(0) tasks of a throttled
// tenant all run; so do tasks that failed once and are throttled on their
// last allowed attempt, whose retry count stays where the failure put it.
func TestTasksOnTheirLastAttemptAreNotLost(t *testing.T) {
	t.Parallel()
	var failedOnce sync.Map
	b := setup(t, bundleConfig{
		policies: map[string]throttle.Policy{"tight": {Rate: 25, Burst: 2}},
		// every throttled task is put back (none waits in process for its
		// slot): the path under test
		opts: []worker.Option{worker.WithWaitInProcess(0)},
		asynqCfg: asynq.Config{
			Concurrency:              6,
			RetryDelayFunc:           func(int, error, *asynq.Task) time.Duration { return 0 },
			DelayedTaskCheckInterval: 100 * time.Millisecond,
		},
		handler: func(ctx context.Context, task *asynq.Task) error {
			if maxRetry, _ := asynq.GetMaxRetry(ctx); maxRetry == 1 {
				id, _ := asynq.GetTaskID(ctx)
				if _, loaded := failedOnce.LoadOrStore(id, true); !loaded {
					return errors.New("first attempt fails")
				}
			}
			return nil
		},
	})
	zero := b.enqueue(t, "tight", 30, asynq.MaxRetry(0))
	last := b.enqueue(t, "tight", 20, asynq.MaxRetry(1))
	q := b.waitQueueDone(t, 30*time.Second)

	final := map[string]run{}
	for _, r := range b.runs.list() {
		final[r.id] = r
	}
	for _, id := range zero {
		if r, ok := final[id]; !ok || r.retried != 0 {
			t.Errorf("MaxRetry(0) task %s: ran=%v retried=%d, want ran with 0", id, ok, r.retried)
		}
	}
	for _, id := range last {
		if r, ok := final[id]; !ok || r.retried != 1 {
			t.Errorf("task %s on its last attempt: ran=%v retried=%d, want ran with 1", id, ok, r.retried)
		}
	}
	// asynq's Processed counts the 20 failed first attempts too.
	if q.Archived != 0 || q.Processed-q.Failed != 50 || q.Failed != 20 {
		t.Errorf("archived=%d processed=%d failed=%d, want 0, 70 and 20 (the first attempts that failed)", q.Archived, q.Processed, q.Failed)
	}
	if st := b.throttler.Stats(); st.Throttled == 0 {
		t.Errorf("no task was throttled (stats %+v): the test does not test anything", st)
	}
	// The ErrorHandler saw the 20 real failures and nothing else.
	errs := b.errs.list()
	if len(errs) != 20 {
		t.Errorf("ErrorHandler got %d errors, want the 20 real failures", len(errs))
	}
	for _, err := range errs {
		if errors.Is(err, worker.ErrRequeued) {
			t.Errorf("ErrorHandler got a throttle: %v", err)
		}
	}
}

// TestRetryAfterPausesItsTenantOnly: a handler's RetryAfter holds its
// tenant, whose tasks then wait until the hold ends, and not the others.
func TestRetryAfterPausesItsTenantOnly(t *testing.T) {
	t.Parallel()
	const hold = 1500 * time.Millisecond
	var (
		once   sync.Once
		heldAt time.Time
		mu     sync.Mutex
	)
	b := setup(t, bundleConfig{
		policies: map[string]throttle.Policy{"held": {Rate: 100, Burst: 50}, "free": {Rate: 100, Burst: 50}},
		handler: func(ctx context.Context, task *asynq.Task) error {
			if task.Headers()[worker.TenantHeader] != "held" {
				return nil
			}
			var err error
			once.Do(func() {
				mu.Lock()
				heldAt = time.Now()
				mu.Unlock()
				err = worker.RetryAfter(hold, errors.New("upstream: 429 Too Many Requests"))
			})
			return err
		},
	})
	first := b.enqueue(t, "held", 1, asynq.MaxRetry(0))
	waitFor(t, 10*time.Second, "the upstream 429", func() bool { return b.throttler.Stats().RetryAfter == 1 })
	held := b.enqueue(t, "held", 10, asynq.MaxRetry(0))
	free := b.enqueue(t, "free", 10, asynq.MaxRetry(0))
	q := b.waitQueueDone(t, 20*time.Second)

	mu.Lock()
	until := heldAt.Add(hold)
	mu.Unlock()
	ran := map[string][]run{}
	for _, r := range b.runs.list() {
		ran[r.id] = append(ran[r.id], r)
	}
	if rs := ran[first[0]]; len(rs) != 2 || rs[1].retried != 0 || rs[1].at.Before(until) {
		t.Errorf("the 429'd task ran %d times, last %+v; want twice, retry count 0, after the hold (%s)", len(rs), rs, until)
	}
	for _, id := range held {
		if rs := ran[id]; len(rs) != 1 || rs[0].at.Before(until) {
			t.Errorf("held tenant's task %s ran %v, want once after the hold ended at %s", id, rs, until)
		}
	}
	for _, id := range free {
		if len(ran[id]) != 1 {
			t.Errorf("free tenant's task %s ran %d times, want once", id, len(ran[id]))
		}
	}
	// The other tenant was never throttled: the hold was its neighbour's.
	if free0 := b.counter(t, "quotaq_worker_throttled_total", "tenant", "free"); free0 != 0 {
		t.Errorf("free tenant throttled %v times, want 0", free0)
	}
	if n := b.counter(t, "quotaq_worker_throttled_total", "tenant", "held", "reason", "upstream"); n != 1 {
		t.Errorf("held tenant's upstream throttles: %v, want 1", n)
	}
	if q.Archived != 0 || q.Failed != 0 || q.Processed != 21 {
		t.Errorf("archived=%d failed=%d processed=%d, want 0 0 21", q.Archived, q.Failed, q.Processed)
	}
	if n, err := b.limiter.HoldCount(context.Background(), "held"); err != nil || n != 1 {
		t.Errorf("HoldCount(held) = %d, %v; want 1", n, err)
	}
}

// TestMalformedTasksAreArchivedAtOnce: a bad tenant or a task with no
// tenant (when refused) is archived at once with an error that says why,
// and the worker goes on.
func TestMalformedTasksAreArchivedAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{opts: []worker.Option{worker.WithUntenanted("")}})
	cases := []struct {
		name    string
		task    *asynq.Task
		wantErr string
	}{
		{"ControlCharInHeader", asynq.NewTaskWithHeaders("job", nil, map[string]string{worker.TenantHeader: "bad\ntenant"}), "control character"},
		{"EmptyHeader", asynq.NewTaskWithHeaders("job", nil, map[string]string{worker.TenantHeader: ""}), "empty"},
		{"TenantFieldNotAString", asynq.NewTask("job", []byte(`{"tenant": 42}`)), `"tenant" field is 42, not a string`},
		{"TooLongTenantField", asynq.NewTask("job", []byte(`{"tenant":"`+strings.Repeat("x", 200)+`"}`)), "200 bytes"},
		{"NoTenant", asynq.NewTask("job", []byte(`not json`)), "has no tenant"},
	}
	ids := map[string]string{}
	for _, tc := range cases {
		info, err := b.client.Enqueue(tc.task, asynq.Queue(b.queue), asynq.MaxRetry(25))
		if err != nil {
			t.Fatal(err)
		}
		ids[tc.name] = info.ID
	}
	good := b.enqueue(t, "fine", 1)
	q := b.waitQueueDone(t, 20*time.Second)
	if q.Archived != len(cases) || q.Processed != len(cases)+1 {
		t.Errorf("archived=%d processed=%d, want %d and %d", q.Archived, q.Processed, len(cases), len(cases)+1)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			info, err := b.inspector.GetTaskInfo(b.queue, ids[tc.name])
			if err != nil {
				t.Fatal(err)
			}
			if info.State != asynq.TaskStateArchived || info.Retried != 0 || !strings.Contains(info.LastErr, tc.wantErr) {
				t.Errorf("state=%v retried=%d last error %q; want archived at once, error containing %q", info.State, info.Retried, info.LastErr, tc.wantErr)
			}
		})
	}
	runs := b.runs.list()
	if len(runs) != 1 || runs[0].id != good[0] {
		t.Errorf("handler ran %v, want only the good task %s", runs, good[0])
	}
}

// TestMaxWaitArchivesTasksThatWouldWaitTooLong: with a cap, a backlog the
// tenant cannot drain in time is archived, with an error saying so, and the
// rest runs.
func TestMaxWaitArchivesTasksThatWouldWaitTooLong(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{
		policies: map[string]throttle.Policy{"trickle": {Rate: 10, Burst: 2}},
		opts:     []worker.Option{worker.WithMaxWait(time.Second)},
	})
	ids := b.enqueue(t, "trickle", 30, asynq.MaxRetry(0))
	q := b.waitQueueDone(t, 20*time.Second)
	// Burst 2 now, then 10/s for 1 s: about 12 may run. (asynq's Processed
	// counts archived tasks too.)
	ran := b.runs.count()
	if q.Processed != 30 || ran+q.Archived != 30 || q.Archived < 10 || ran < 5 || ran > 14 {
		t.Errorf("ran=%d archived=%d processed=%d; want about 12 and 18, 30 in all", ran, q.Archived, q.Processed)
	}
	archived, err := b.inspector.ListArchivedTasks(b.queue, asynq.PageSize(100))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range archived {
		if !strings.Contains(a.LastErr, "more than the max wait of 1s") {
			t.Errorf("archived task %s: error %q does not say it passed the max wait", a.ID, a.LastErr)
		}
	}
	if st := b.throttler.Stats(); st.Archived != int64(q.Archived) {
		t.Errorf("Stats().Archived=%d, asynq archived %d", st.Archived, q.Archived)
	}
	_ = ids
}

// TestUpstreamLimitIsShared: two tenants with generous limits of their own
// call one upstream limited to 20/s: together they get the upstream's rate.
func TestUpstreamLimitIsShared(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{
		policies: map[string]throttle.Policy{
			"t1": {Rate: 1000, Burst: 100}, "t2": {Rate: 1000, Burst: 100},
			throttle.Upstream("api.example"): {Rate: 20, Burst: 5},
		},
		opts: []worker.Option{
			worker.WithUpstream(func(*asynq.Task) []string { return []string{"api.example"} }),
			worker.WithAllowedUpstreams("api.*"),
			// on a loaded machine tasks come back late, and late ones take
			// their turn among the starts again: up to the 2 s the backlog
			// lasts, they wait for it here rather than being put back
			worker.WithWaitInProcess(3 * time.Second),
		},
	})
	start := time.Now()
	b.enqueue(t, "t1", 20, asynq.MaxRetry(0))
	b.enqueue(t, "t2", 20, asynq.MaxRetry(0))
	q := b.waitQueueDone(t, 20*time.Second)
	if q.Processed != 40 || q.Archived != 0 {
		t.Errorf("processed=%d archived=%d, want 40 0", q.Processed, q.Archived)
	}
	var at []time.Time
	for _, r := range b.runs.list() {
		at = append(at, r.at)
	}
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	for k, ts := range at {
		if allowed := 5 + 20*ts.Sub(start).Seconds(); float64(k+1) > allowed+1 {
			t.Fatalf("%d runs by %s; the shared upstream allows %.1f", k+1, ts.Sub(start), allowed)
		}
	}
	// each task comes back at its turn and runs; a worker descheduled for
	// longer than its wait-in-process (a heavily loaded machine) may put
	// one or two back again, never most of them
	if st := b.throttler.Stats(); st.Rethrottled > 2 {
		t.Errorf("rethrottled %d, want at most 2 of 40", st.Rethrottled)
	}
}

// TestUpstreamHeaderCannotReachATenant: a task's upstream header names a
// shared limit apart from the tenants, and only one the worker accepts. A
// tenant that names another tenant as its upstream spends nothing of that
// tenant's; an upstream the worker does not list, or a tenant id that poses
// as an upstream id, archives the task with a reason.
func TestUpstreamHeaderCannotReachATenant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, bundleConfig{
		policies: map[string]throttle.Policy{"acme": {Rate: 0.01, Burst: 3}, throttle.Upstream("acme"): {Rate: 0.01, Burst: 3}},
		opts:     []worker.Option{worker.WithAllowedUpstreams("acme", "api.*")},
	})
	put := func(tenant, upstream string) {
		t.Helper()
		task := asynq.NewTaskWithHeaders("job", nil, map[string]string{worker.TenantHeader: tenant, worker.UpstreamHeader: upstream})
		if _, err := b.client.Enqueue(task, asynq.Queue(b.queue), asynq.MaxRetry(0)); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		put("evil", "acme")
	}
	put("evil", "billing")             // not accepted by this worker
	put("upstream:acme", "api.stripe") // a tenant posing as an upstream
	q := b.waitQueueDone(t, 20*time.Second)
	if n := b.runs.count(); n != 3 || q.Archived != 2 {
		t.Fatalf("ran %d, archived %d; want 3 2", n, q.Archived)
	}
	if r, err := b.limiter.Peek(ctx, "acme"); err != nil || r.Remaining != 3 {
		t.Fatalf("tenant acme after evil's tasks named upstream acme: %+v, %v; want its 3 tokens untouched", r, err)
	}
	if r, err := b.limiter.Peek(ctx, throttle.Upstream("acme")); err != nil || r.Remaining != 0 {
		t.Fatalf("upstream acme after 3 tasks: %+v, %v; want 0 tokens left", r, err)
	}
	if n := b.counter(t, "quotaq_worker_archived_total", "type", "job", "reason", "unknown_upstream"); n != 1 {
		t.Errorf("archived unknown_upstream = %v, want 1", n)
	}
	if n := b.counter(t, "quotaq_worker_archived_total", "type", "job", "reason", "invalid_tenant"); n != 1 {
		t.Errorf("archived invalid_tenant = %v, want 1", n)
	}
	if logs := b.logs.String(); !strings.Contains(logs, `names upstream \"billing\", which this worker does not accept`) {
		t.Errorf("no log line names the refused upstream:\n%s", logs)
	}
}

// TestExemptTasksSkipTheLimiter: the scheduler's quota tasks never wait.
func TestExemptTasksSkipTheLimiter(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	l := throttle.New(rdb, throttle.WithPrefix(prefix))
	th := worker.New(l, rdb)
	t.Cleanup(func() { _ = th.Close() })
	ran := false
	h := th.Middleware(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { ran = true; return nil }))
	// No asynq context at all: an exempt task must not even look for one.
	if err := h.ProcessTask(context.Background(), asynq.NewTask("quotaq:quota:reset", nil)); err != nil || !ran {
		t.Errorf("exempt task: ran=%v err=%v; want run, no error", ran, err)
	}
	ran = false
	if err := h.ProcessTask(context.Background(), asynq.NewTask("job", nil)); err == nil || ran {
		t.Errorf("task outside an asynq server: ran=%v err=%v; want an error and no run", ran, err)
	}
}
