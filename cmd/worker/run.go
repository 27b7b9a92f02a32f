package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/quotaq/quotaq/console"
	"github.com/quotaq/quotaq/internal/cmdline"
	"github.com/quotaq/quotaq/internal/redisconn"
	"github.com/quotaq/quotaq/internal/tenantstatus"
	"github.com/quotaq/quotaq/scheduler"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// run is the whole command: it returns the exit code (0 after a clean
// shutdown when ctx is cancelled, 1 on a runtime error, 2 on a usage error).
// Help and the version go to stdout; errors and logs to stderr.
func run(ctx context.Context, args []string, env cmdline.Env, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(ctx, args[1:], env, stdout, stderr)
	}
	o, err := parseFlags(args, env, stdout)
	if errors.Is(err, flag.ErrHelp) || errors.Is(err, errVersion) {
		return 0
	}
	if err != nil {
		return usageError(stderr, err)
	}
	return o.run(ctx, stderr)
}

// usageError reports err on one line and returns exit code 2.
func usageError(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "quotaq-worker: %s (see quotaq-worker --help)\n", cmdline.OneLine(err.Error()))
	return 2
}

func (o *options) logger(w io.Writer) *slog.Logger {
	level, _ := o.level()
	hopts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

// durationsAsText writes durations as people read them ("1.5s"), not as
// the nanoseconds the JSON handler writes by default.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

func (o *options) run(ctx context.Context, logw io.Writer) int {
	logger := o.logger(logw)
	fail := func(msg string, err error) int {
		logger.Error("quotaq-worker: "+msg, "err", err)
		return 1
	}
	redisconn.SetRedisLogger(logger)
	for _, w := range o.warnings {
		logger.Warn("quotaq-worker: " + w)
	}

	// The schedule file is read before anything starts: a bad file is a
	// usage error.
	var sched *scheduler.Schedule
	if o.schedule != "" {
		s, err := scheduler.LoadFile(o.schedule)
		if err != nil {
			fmt.Fprintf(logw, "quotaq-worker: --schedule: %v\n", err)
			return 2
		}
		sched = s
	}

	conn, err := o.redis.Open(ctx, logger)
	if errors.Is(err, redisconn.ErrInvalidConfig) || errors.Is(err, redisconn.ErrEvictionPolicy) {
		// a configuration error, of the command line or of the server
		fmt.Fprintf(logw, "quotaq-worker: %v\n", err)
		return 2
	}
	if err != nil {
		return fail("cannot reach Redis", err)
	}
	defer conn.Close()

	algo, _ := throttle.ParseAlgorithm(o.algorithm)
	limiterOpts := []throttle.Option{
		throttle.WithPrefix(o.prefix),
		throttle.WithFailOpen(o.failOpen),
		throttle.WithAlgorithm(algo),
		throttle.WithDefaultPolicy(throttle.Policy{Rate: o.defaultRate, Burst: o.defaultBurst}),
		throttle.WithLeases(o.lease, 0),
		throttle.WithLearning(o.learning()),
	}
	if o.batch > 0 {
		limiterOpts = append(limiterOpts, throttle.WithBatching(o.batch, 0))
	}
	limiter := throttle.New(conn.Redis, limiterOpts...)
	if err := limiter.Err(); err != nil {
		fmt.Fprintf(logw, "quotaq-worker: %v\n", err)
		return 2
	}
	// quotaq-enqueue shows this default for tenants without a policy, until
	// one is stored in Redis
	if err := tenantstatus.RecordWorkerDefault(ctx, conn.Redis, o.prefix, throttle.Policy{Rate: o.defaultRate, Burst: o.defaultBurst}); err != nil {
		logger.Warn("quotaq-worker: could not record the default policy for quotaq-enqueue", "err", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := worker.NewMetrics(reg, o.perTenant, worker.MaxTypes(o.maxTypes), worker.KnownTypes(o.handledTypes()...))
	if err != nil {
		return fail("metrics", err)
	}
	conn.Redis.AddHook(metrics.RedisHook())
	schedMetrics, err := scheduler.NewMetrics(reg)
	if err != nil {
		return fail("metrics", err)
	}

	untenanted := o.untenanted
	if o.refuseUntenanted {
		untenanted = ""
	}
	th, err := worker.NewChecked(limiter, conn.Redis,
		worker.WithLogger(logger),
		worker.WithMetrics(metrics),
		worker.WithMaxWait(o.maxWait),
		worker.WithMinDelay(o.minDelay),
		worker.WithSlotTTL(o.slotTTL),
		worker.WithWaitInProcess(o.waitInProcess),
		worker.WithUntenanted(untenanted),
		worker.WithAllowedUpstreams(o.upstreamList()...),
		worker.WithMaxRetryAfter(o.maxRetryAfter),
		worker.WithShadow(o.shadow),
	)
	if err != nil {
		return fail("cannot start", err)
	}
	defer th.Close()
	reg.MustRegister(th.StateCollector(o.queueNames(), worker.WatchTenants(o.watch)))

	level, _ := o.level()
	srv := asynq.NewServerFromRedisClient(conn.Redis, th.ServerConfig(asynq.Config{
		Concurrency:              o.concurrency,
		Queues:                   o.queues,
		StrictPriority:           o.strictPriority,
		ShutdownTimeout:          o.shutdownTimeout,
		DelayedTaskCheckInterval: o.delayedCheck,
		TaskCheckInterval:        o.taskCheck,
		LogLevel:                 asynqLevel(level),
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, task *asynq.Task, err error) {
			id, _ := asynq.GetTaskID(ctx)
			retried, _ := asynq.GetRetryCount(ctx)
			maxRetry, _ := asynq.GetMaxRetry(ctx)
			logger.Warn("quotaq-worker: task failed", "type", task.Type(), "task_id", id, "retried", retried, "max_retry", maxRetry, "err", err)
		}),
	}))

	mux := asynq.NewServeMux()
	mux.Use(th.Middleware)
	var cons *console.Console
	if o.console && o.metricsAddr != "" {
		cons = console.New(limiter, conn.Redis, console.WithActions(o.consoleActions), console.WithLogger(logger),
			console.WithAllowedHosts(splitList(o.consoleHosts)...))
		defer cons.Close()
		mux.Use(cons.Middleware) // after the throttler's: counts the tasks that start
	}
	scheduler.RegisterHandlers(mux, limiter, scheduler.WithLogger(logger), scheduler.WithRelease(th.Release), scheduler.WithMetrics(schedMetrics))
	mux.Handle(worker.TypeHTTPCall, worker.NewHTTPCallHandler(&http.Client{Timeout: o.httpTimeout}, worker.WithAllowList(o.allow)))
	for _, typ := range o.echoTypeList() {
		mux.HandleFunc(typ, echo(logger))
	}

	var metricsSrv *http.Server
	if o.metricsAddr != "" {
		ln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return fail("cannot listen on --metrics-addr "+o.metricsAddr, err)
		}
		hmux := http.NewServeMux()
		hmux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		hmux.HandleFunc("/healthz", healthz(conn, logger))
		if cons != nil {
			hmux.Handle("/ui/", http.StripPrefix("/ui", cons))
			hmux.Handle("/{$}", http.RedirectHandler("/ui/", http.StatusFound))
		}
		metricsSrv = &http.Server{Handler: hmux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = metricsSrv.Serve(ln) }()
		logger.Info("quotaq-worker: metrics on http://" + ln.Addr().String() + "/metrics")
		if cons != nil {
			logger.Info("quotaq-worker: web page on http://"+ln.Addr().String()+"/ui/", "actions", o.consoleActions)
		}
	}

	if err := srv.Start(mux); err != nil {
		return fail("cannot start the asynq server", err)
	}
	var sch *scheduler.Scheduler
	if sched != nil {
		client := asynq.NewClientFromRedisClient(conn.Redis)
		sch = scheduler.New(client, sched, scheduler.WithLogger(logger), scheduler.WithQueue(o.scheduleQueue), scheduler.WithMetrics(schedMetrics))
		sch.Start()
		logger.Info("quotaq-worker: running schedule", "file", o.schedule, "queue", o.scheduleQueue)
		if err := scheduler.RecordNextResets(ctx, limiter, sched, time.Now()); err != nil {
			logger.Warn("quotaq-worker: could not record the schedule's next quota resets; tasks refused by a quota retry every minute until the first reset runs", "err", err)
		}
	}
	logger.Info("quotaq-worker: started", "redis", conn.Addr, "embedded", conn.Embedded, "maxmemory_policy", orUnknown(conn.MaxmemoryPolicy), "queues", o.queues.String(),
		"concurrency", o.concurrency, "fail_open", o.failOpen, "max_wait", o.maxWait, "http_allow", o.allow.String())

	<-ctx.Done()
	logger.Info("quotaq-worker: shutting down: no new tasks; running ones may finish", "timeout", o.shutdownTimeout)
	if sch != nil {
		select {
		case <-sch.Stop().Done():
		case <-time.After(o.shutdownTimeout):
			logger.Warn("quotaq-worker: the scheduler's enqueues did not finish in time")
		}
	}
	srv.Shutdown() // waits up to ShutdownTimeout, then hands the rest back to their queues
	if metricsSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = metricsSrv.Shutdown(sctx)
		cancel()
	}
	logger.Info("quotaq-worker: stopped")
	return 0
}

// healthz answers "ok" and Redis's maxmemory-policy while Redis answers
// PING, else 503 "redis unavailable": the error itself goes to the log, not
// to whoever can reach the endpoint.
func healthz(conn *redisconn.Conn, logger *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := conn.Redis.Ping(r.Context()).Err(); err != nil {
			logger.Warn("quotaq-worker: /healthz: Redis does not answer", "redis", conn.Addr, "err", err)
			http.Error(w, "redis unavailable", http.StatusServiceUnavailable)
			return
		}
		policy := conn.MaxmemoryPolicy
		if p, err := conn.EvictionPolicy(r.Context()); err == nil {
			policy = p
		}
		fmt.Fprintf(w, "ok\nmaxmemory-policy %s\n", orUnknown(policy))
	}
}

// orUnknown is p, or "unknown" when Redis did not tell.
func orUnknown(p string) string {
	if p == "" {
		return "unknown"
	}
	return p
}

// echo is the handler of --echo-types: it logs the task and succeeds.
func echo(logger *slog.Logger) asynq.HandlerFunc {
	return func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		logger.Info("quotaq-worker: echo", "type", task.Type(), "task_id", id, "tenant", task.Headers()[worker.TenantHeader], "payload", string(task.Payload()))
		return nil
	}
}
