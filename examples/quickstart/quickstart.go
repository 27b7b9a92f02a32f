package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotaq/quotaq/examples/internal/fakeapi"
	"github.com/quotaq/quotaq/examples/internal/sandbox"
	"github.com/quotaq/quotaq/internal/redisconn"
	"github.com/quotaq/quotaq/scheduler"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// config is one run of the quickstart.
type config struct {
	Scenario scenario
	Redis    redisconn.Config
	Logger   *slog.Logger
	// Draw is called with the live state about every Tick, and once with
	// the final summary.
	Draw func(Summary)
	Tick time.Duration
}

// tally counts one tenant's processed tasks, with their times.
type tally struct {
	mu    sync.Mutex
	times []time.Time
}

func (t *tally) add(at time.Time) {
	t.mu.Lock()
	t.times = append(t.times, at)
	t.mu.Unlock()
}

// stats returns the count, the rate over the last two seconds before now,
// and the rate from the first task to the last.
func (t *tally) stats(now time.Time) (n int, recent, overall float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n = len(t.times)
	for i := n - 1; i >= 0 && now.Sub(t.times[i]) <= 2*time.Second; i-- {
		recent++
	}
	recent /= 2
	if n >= 2 {
		if span := t.times[n-1].Sub(t.times[0]).Seconds(); span > 0 {
			overall = float64(n-1) / span
		}
	}
	return n, recent, overall
}

// run is everything the quickstart does: Redis (embedded unless configured),
// the fake upstream, the worker with its throttle, the scheduler, the backlog,
// and the table until the backlog is done, the timeout passes or ctx ends.
func quickstart(ctx context.Context, cfg config) (Summary, error) {
	sc, logger := cfg.Scenario, cfg.Logger
	conn, err := cfg.Redis.Open(ctx, logger)
	if err != nil {
		return Summary{}, err
	}
	defer conn.Close()
	rdb := conn.Redis

	// Every run has its own names, so a shared Redis (REDIS_URL) is not
	// disturbed and the run starts from nothing.
	box := sandbox.New("quickstart")
	prefix, queue, control := box.Prefix, box.Queue(""), box.Queue("control")
	if !conn.Embedded {
		defer func() {
			if err := box.Cleanup(rdb); err != nil {
				logger.Warn("quickstart: cleanup", "err", err)
			}
		}()
	}

	// The limiter and the tenants' policies.
	// WithQuotaRetry: a task refused by a quota whose reset time is not
	// known comes back after a second (default a minute). Here that only
	// happens in the moment between a scheduled reset's time and its task
	// running, so "any moment now" is the right answer.
	lim := throttle.New(rdb, throttle.WithPrefix(prefix), throttle.WithQuotaRetry(time.Second))
	for _, t := range sc.Tenants {
		if err := lim.SetPolicy(ctx, t.ID, t.Policy); err != nil {
			return Summary{}, fmt.Errorf("policy of %s: %w", t.ID, err)
		}
	}

	// The fake upstream API, limited per API key by httplimit.
	plans := map[string]fakeapi.Plan{}
	for _, t := range sc.Tenants {
		plans[t.ID] = t.Plan
	}
	api, err := fakeapi.New(ctx, rdb, fakeapi.Config{Plans: plans, Prefix: prefix + "-upstream", Logger: logger})
	if err != nil {
		return Summary{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Summary{}, fmt.Errorf("listen for the fake upstream: %w", err)
	}
	upstream := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = upstream.Serve(ln) }()
	defer upstream.Close()
	upstreamURL := "http://" + ln.Addr().String()

	// The worker: the throttle middleware, the scheduler's handlers and
	// the generic HTTP call handler, counted per tenant.
	reg := prometheus.NewRegistry()
	metrics, err := worker.NewMetrics(reg, true)
	if err != nil {
		return Summary{}, err
	}
	th, err := worker.NewChecked(lim, rdb, worker.WithLogger(logger), worker.WithMetrics(metrics))
	if err != nil {
		return Summary{}, err
	}
	defer th.Close()

	tallies := map[string]*tally{}
	for _, t := range sc.Tenants {
		tallies[t.ID] = &tally{}
	}
	var resets, failed atomic.Int64
	control2 := asynq.NewServeMux()
	scheduler.RegisterHandlers(control2, lim, scheduler.WithLogger(logger))
	calls := worker.NewHTTPCallHandler(&http.Client{Timeout: 10 * time.Second})
	mux := asynq.NewServeMux()
	mux.Use(th.Middleware)
	mux.Handle(scheduler.TypeQuotaReset, asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		err := control2.ProcessTask(ctx, task)
		if err == nil {
			resets.Add(1)
		}
		return err
	}))
	mux.Handle(scheduler.TypeQuotaAdjust, control2)
	mux.Handle(worker.TypeHTTPCall, asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		at := time.Now() // when the throttle let it run
		err := calls.ProcessTask(ctx, task)
		if err == nil {
			if t := tallies[task.Headers()[worker.TenantHeader]]; t != nil {
				t.add(at)
			}
		}
		return err
	}))
	srv := asynq.NewServerFromRedisClient(rdb, th.ServerConfig(asynq.Config{
		Concurrency:     sc.Concurrency,
		Queues:          map[string]int{control: 10, queue: 1},
		StrictPriority:  true, // a quota reset never waits behind the backlog
		ShutdownTimeout: 5 * time.Second,
		// An idle asynq processor looks at its queues again after about
		// TaskCheckInterval (the worker's default 250ms, asynq's 1s): a task
		// the throttle brings back at its slot waits that long to start, and
		// tasks that waited together start together. 20ms keeps each
		// tenant's calls close to their slots, for 50 polls a second.
		TaskCheckInterval: 20 * time.Millisecond,
		LogLevel:          asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, task *asynq.Task, err error) {
			failed.Add(1)
			logger.Warn("quickstart: task failed", "type", task.Type(), "tenant", task.Headers()[worker.TenantHeader], "err", err)
		}),
	}))
	if err := srv.Start(mux); err != nil {
		return Summary{}, fmt.Errorf("start the worker: %w", err)
	}
	defer srv.Shutdown()

	// The scheduler resets the quota tenants' quotas. Until its first reset
	// has run, the limiter is told when that will be, so that tasks refused
	// by the quota come back then.
	client := asynq.NewClientFromRedisClient(rdb)
	var quotaTenants []string
	for _, t := range sc.Tenants {
		if t.Policy.Quota > 0 {
			quotaTenants = append(quotaTenants, t.ID)
		}
	}
	if len(quotaTenants) > 0 {
		sched, err := scheduler.Parse("quickstart schedule", scheduleFile(sc.ResetEvery, quotaTenants))
		if err != nil {
			return Summary{}, err
		}
		next := sched.Entries[0].Schedule.Next(time.Now())
		for _, id := range quotaTenants {
			if err := lim.SetQuotaReset(ctx, id, next); err != nil {
				return Summary{}, err
			}
		}
		sch := scheduler.New(client, sched, scheduler.WithQueue(control), scheduler.WithLogger(logger))
		sch.Start()
		defer func() { <-sch.Stop().Done() }()
	}

	// The backlog, the tenants' tasks interleaved.
	start := time.Now()
	for i := 0; ; i++ {
		more := false
		for _, t := range sc.Tenants {
			if i >= t.Tasks {
				continue
			}
			more = true
			task, err := worker.NewHTTPCallTask(worker.HTTPCall{
				Tenant: t.ID,
				Method: http.MethodPost,
				URL:    upstreamURL + "/v1/work",
				Header: map[string]string{fakeapi.KeyHeader: t.ID},
			}, asynq.Queue(queue))
			if err != nil {
				return Summary{}, err
			}
			if _, err := client.EnqueueContext(ctx, task); err != nil {
				return Summary{}, fmt.Errorf("enqueue the backlog: %w", err)
			}
		}
		if !more {
			break
		}
	}

	snapshot := func(final bool) Summary {
		now := time.Now()
		s := Summary{Elapsed: now.Sub(start), Redis: conn.Addr, Embedded: conn.Embedded, Upstream: upstreamURL,
			Resets: resets.Load(), Failed: failed.Load(), Final: final}
		counts := tenantCounts(reg)
		up := api.Stats()
		for _, t := range sc.Tenants {
			n, recent, overall := tallies[t.ID].stats(now)
			r := Row{ID: t.ID, Policy: t.Policy, Plan: t.Plan, Tasks: t.Tasks, Processed: n, Rate: recent,
				Throttled: counts[t.ID].throttled, Requeued: counts[t.ID].requeued, Rethrottled: counts[t.ID].rethrottled,
				Served: up[t.ID].Served, Refused: up[t.ID].Refused, QuotaLeft: -1}
			if final {
				r.Rate = overall
			}
			if st, err := lim.Standing(ctx, t.ID); err == nil {
				r.QuotaLeft, r.QuotaReset = st.QuotaRemaining, st.QuotaResetAfter
			}
			s.Rows = append(s.Rows, r)
		}
		return s
	}

	tick := time.NewTicker(cfg.Tick)
	defer tick.Stop()
	deadline := time.After(sc.Timeout)
	var stopped, timedOut bool
loop:
	for {
		select {
		case <-ctx.Done():
			stopped = true
			break loop
		case <-deadline:
			timedOut = true
			break loop
		case <-tick.C:
			s := snapshot(false)
			cfg.Draw(s)
			if s.Processed() == sc.total() {
				break loop
			}
		}
	}

	// Stop taking tasks, then read the final numbers.
	srv.Shutdown()
	final := snapshot(true)
	final.Stopped, final.TimedOut = stopped, timedOut
	cfg.Draw(final)
	return final, nil
}

// scheduleFile is the scheduler's schedule: one entry resetting tenants.
func scheduleFile(every string, tenants []string) []byte {
	quoted := ""
	for i, t := range tenants {
		if i > 0 {
			quoted += ", "
		}
		quoted += fmt.Sprintf("%q", t)
	}
	return fmt.Appendf(nil, `entries:
  - name: quota-reset
    cron: %q
    action: reset
    tenants: [%s]
    catch_up: 0s
`, every, quoted)
}

type counts struct{ throttled, requeued, rethrottled int64 }

// tenantCounts reads the worker's per-tenant counters from its registry.
func tenantCounts(reg *prometheus.Registry) map[string]counts {
	out := map[string]counts{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			tenant := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "tenant" {
					tenant = l.GetValue()
				}
			}
			if tenant == "" || m.GetCounter() == nil {
				continue
			}
			c := out[tenant]
			v := int64(m.GetCounter().GetValue())
			switch mf.GetName() {
			case "quotaq_worker_throttled_total":
				c.throttled += v
			case "quotaq_worker_requeued_total":
				c.requeued += v
			case "quotaq_worker_rethrottled_total":
				c.rethrottled += v
			}
			out[tenant] = c
		}
	}
	return out
}
