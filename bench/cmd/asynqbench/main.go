// Command asynqbench measures quotaq end to end through asynq, on one
// redis-server it starts: plain asynq against the throttle middleware
// (tasks/s, tenants far under their limits); a throttled backlog of one
// tenant (dequeues and Redis commands per processed task, achieved rate,
// with a PNG plot); and a noisy neighbour (the quiet tenant's wait from
// enqueue to start). The backlog and the noisy neighbour run twice: tasks
// enqueued as they come, and tasks shaped at enqueue time (worker.Shaper);
// -ways picks one. It prints Markdown tables.
//
//	cd bench && go run ./cmd/asynqbench -plot-dir .
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/bench/internal/harness"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

type config struct {
	addr        string
	parts       []string
	concurrency int
	tasks       int // throughput part
	tenants     int
	backlog     int
	backlogRate int64
	noisy       int
	noisyRate   int64
	quiet       int
	quietRate   int64
	quietOver   time.Duration
	maxTime     time.Duration
	plotDir     string
	rounds      int
	ways        map[string]bool // backlog, noisy: "plain", "shaped"
}

func main() {
	var cfg config
	var parts, ways string
	flag.StringVar(&cfg.addr, "addr", "", "use this redis-server (host:port) instead of starting one; it is FLUSHALLed")
	flag.StringVar(&parts, "parts", "throughput,backlog,noisy", "what to run, comma-separated")
	flag.IntVar(&cfg.concurrency, "concurrency", 50, "asynq worker concurrency")
	flag.IntVar(&cfg.tasks, "tasks", 20000, "throughput: no-op tasks per mode")
	flag.IntVar(&cfg.tenants, "tenants", 100, "throughput: tenants the tasks are spread over (each far under its limit)")
	flag.IntVar(&cfg.backlog, "backlog", 10000, "backlog: tasks of the one throttled tenant")
	flag.Int64Var(&cfg.backlogRate, "backlog-rate", 50, "backlog: the tenant's rate and burst, per second")
	flag.IntVar(&cfg.noisy, "noisy", 20000, "noisy neighbour: tasks of the noisy tenant, enqueued first")
	flag.Int64Var(&cfg.noisyRate, "noisy-rate", 20, "noisy neighbour: the noisy tenant's rate and burst, per second")
	flag.IntVar(&cfg.quiet, "quiet", 200, "noisy neighbour: tasks of the quiet tenant")
	flag.Int64Var(&cfg.quietRate, "quiet-rate", 1000, "noisy neighbour: the quiet tenant's rate and burst, per second")
	flag.DurationVar(&cfg.quietOver, "quiet-over", 2*time.Second, "noisy neighbour: the quiet tenant's tasks are enqueued evenly over this time")
	flag.DurationVar(&cfg.maxTime, "max-time", 10*time.Minute, "give up on a part after this long")
	flag.StringVar(&cfg.plotDir, "plot-dir", "", "write the achieved-rate plots (PNG) here; empty: no plots")
	flag.StringVar(&ways, "ways", "plain,shaped", "backlog, noisy: how to enqueue, comma-separated: plain (middleware only), shaped (worker.Shaper)")
	flag.IntVar(&cfg.rounds, "rounds", 3, "throughput: rounds, the workers interleaved; the median round is shown")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the benchmark process (client, workers) to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "asynqbench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	cfg.parts = strings.Split(parts, ",")
	cfg.ways = map[string]bool{}
	for _, w := range strings.Split(ways, ",") {
		if w != "plain" && w != "shaped" {
			fmt.Fprintf(os.Stderr, "asynqbench: unknown way %q (use plain, shaped)\n", w)
			os.Exit(2)
		}
		cfg.ways[w] = true
	}
	if cfg.rounds < 1 || cfg.concurrency < 1 || cfg.tasks < 1 || cfg.tenants < 1 || cfg.backlog < 1 || cfg.backlogRate < 1 ||
		cfg.noisy < 1 || cfg.noisyRate < 1 || cfg.quiet < 1 || cfg.quietRate < 1 {
		fmt.Fprintln(os.Stderr, "asynqbench: counts and rates must be at least 1")
		os.Exit(2)
	}
	for _, p := range cfg.parts {
		if p != "throughput" && p != "backlog" && p != "noisy" {
			fmt.Fprintf(os.Stderr, "asynqbench: unknown part %q (use throughput, backlog, noisy)\n", p)
			os.Exit(2)
		}
	}
	if err := run(os.Stdout, cfg); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "asynqbench:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, cfg config) error {
	ctx := context.Background()
	srv, err := harness.StartServer(cfg.addr)
	if err != nil {
		return err
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 2*cfg.concurrency + 32})
	defer rdb.Close()
	fmt.Fprintf(w, "redis-server %s on %s; asynq %s worker, client and server on one machine, %s at start\n\n",
		harness.Version(ctx, rdb), srv.Addr, "v0.26.0", harness.Load())
	for _, part := range cfg.parts {
		var err error
		switch part {
		case "throughput":
			err = throughput(ctx, w, rdb, cfg)
		case "backlog":
			err = backlog(ctx, w, rdb, cfg)
		case "noisy":
			err = noisy(ctx, w, rdb, cfg)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", part, err)
		}
	}
	fmt.Fprintf(w, "%s at the end\n", harness.Load())
	return nil
}

const (
	taskType = "bench:job"
	queue    = "default"
)

// payload is what each task carries: its tenant and when it was enqueued.
type payload struct {
	Tenant string `json:"tenant"`
	Enq    int64  `json:"enq"` // unix ns
}

func newTask(tenant string) *asynq.Task {
	b, _ := json.Marshal(payload{Tenant: tenant, Enq: time.Now().UnixNano()})
	return asynq.NewTaskWithHeaders(taskType, b, map[string]string{worker.TenantHeader: tenant})
}

// recorder keeps, per tenant, when each task started and how long it waited
// since it was enqueued, and counts the dequeues the middleware saw.
type recorder struct {
	dequeues  atomic.Int64
	processed atomic.Int64
	mu        sync.Mutex
	starts    map[string][]time.Time
	waits     map[string][]time.Duration
}

func newRecorder() *recorder {
	return &recorder{starts: map[string][]time.Time{}, waits: map[string][]time.Duration{}}
}

func (r *recorder) countDequeues(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		r.dequeues.Add(1)
		return next.ProcessTask(ctx, t)
	})
}

func (r *recorder) handle(_ context.Context, t *asynq.Task) error {
	now := time.Now()
	var p payload
	_ = json.Unmarshal(t.Payload(), &p)
	r.mu.Lock()
	r.starts[p.Tenant] = append(r.starts[p.Tenant], now)
	r.waits[p.Tenant] = append(r.waits[p.Tenant], now.Sub(time.Unix(0, p.Enq)))
	r.mu.Unlock()
	r.processed.Add(1)
	return nil
}

func (r *recorder) count(tenant string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.starts[tenant])
}

// workerKind is how the asynq server under test is built.
type workerKind struct {
	name     string
	throttle bool
	opts     []throttle.Option
}

// server is a running asynq server with its recorder.
type server struct {
	srv       *asynq.Server
	throttler *worker.Throttler
	rec       *recorder
}

func (s *server) stop() {
	s.srv.Shutdown()
	if s.throttler != nil {
		_ = s.throttler.Close()
	}
}

func quietLogger() *slog.Logger {
	lvl := slog.LevelError
	if os.Getenv("ASYNQBENCH_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func startServer(rdb *redis.Client, l *throttle.Limiter, kind workerKind, concurrency int) (*server, error) {
	rec := newRecorder()
	acfg := asynq.Config{
		Concurrency: concurrency,
		Queues:      map[string]int{queue: 1},
		// the forwarder moves due scheduled tasks (shaped ones, asynq's
		// retries) at most this late; 100 ms keeps a shaped tenant's
		// tasks from arriving in lumps of two seconds' worth
		DelayedTaskCheckInterval: 100 * time.Millisecond,
		LogLevel:                 asynq.ErrorLevel,
		Logger:                   worker.NewAsynqLogger(quietLogger()),
	}
	mux := asynq.NewServeMux()
	mux.Use(rec.countDequeues)
	s := &server{rec: rec}
	if kind.throttle {
		s.throttler = worker.New(l, rdb, worker.WithLogger(quietLogger()))
		acfg = s.throttler.ServerConfig(acfg)
		mux.Use(s.throttler.Middleware)
	}
	mux.HandleFunc(taskType, rec.handle)
	s.srv = asynq.NewServerFromRedisClient(rdb, acfg)
	if err := s.srv.Start(mux); err != nil {
		return nil, err
	}
	return s, nil
}

// enqueueAll enqueues tasks from 16 callers; tenantOf names task i's tenant,
// and shape (when not nil) enqueues it instead.
func enqueueAll(ctx context.Context, c *asynq.Client, n int, tenantOf func(i int) string, shape *worker.Shaper) error {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	var next atomic.Int64
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				var err error
				if shape != nil {
					_, err = shape.Enqueue(ctx, newTask(tenantOf(i)), asynq.Queue(queue))
				} else {
					_, err = c.EnqueueContext(ctx, newTask(tenantOf(i)), asynq.Queue(queue))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// waitFor polls cond until it holds or d has passed.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// throughput: no-op tasks of tenants far under their limits, plain asynq
// against the middleware, in rounds with the workers interleaved (the load
// of a shared machine moves; the median round of each is shown, with the
// spread).
func throughput(ctx context.Context, w io.Writer, rdb *redis.Client, cfg config) error {
	kinds := []workerKind{
		{name: "plain asynq"},
		{name: "quotaq middleware", throttle: true},
		{name: "quotaq middleware, limiter +batch", throttle: true, opts: []throttle.Option{throttle.WithBatching(0, 0)}},
		{name: "quotaq middleware, limiter +lease 100ms (quotaq-worker's default)", throttle: true, opts: []throttle.Option{throttle.WithLeases(100*time.Millisecond, 0)}},
		{name: "quotaq middleware, limiter +lease 100ms +batch", throttle: true, opts: []throttle.Option{throttle.WithLeases(100*time.Millisecond, 0), throttle.WithBatching(0, 0)}},
	}
	type round struct {
		rate               float64
		dequeues, commands float64
		scripts            float64
	}
	results := make([][]round, len(kinds))
	for range cfg.rounds {
		for ki, k := range kinds {
			if err := rdb.FlushAll(ctx).Err(); err != nil {
				return err
			}
			l := throttle.New(rdb, append([]throttle.Option{throttle.WithPrefix("bq"), throttle.WithDefaultPolicy(throttle.PerSecond(1_000_000))}, k.opts...)...)
			c := asynq.NewClientFromRedisClient(rdb)
			if err := enqueueAll(ctx, c, cfg.tasks, func(i int) string { return fmt.Sprintf("tenant-%d", i%cfg.tenants) }, nil); err != nil {
				return err
			}
			if err := harness.ResetStats(ctx, rdb); err != nil {
				return err
			}
			start := time.Now()
			s, err := startServer(rdb, l, k, cfg.concurrency)
			if err != nil {
				return err
			}
			ok := waitFor(cfg.maxTime, func() bool { return s.rec.processed.Load() >= int64(cfg.tasks) })
			elapsed := time.Since(start)
			counters, err := harness.ReadCounters(ctx, rdb)
			s.stop()
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s: %d of %d tasks processed in %s", k.name, s.rec.processed.Load(), cfg.tasks, cfg.maxTime)
			}
			n := float64(cfg.tasks)
			results[ki] = append(results[ki], round{
				rate:     n / elapsed.Seconds(),
				dequeues: float64(s.rec.dequeues.Load()) / n,
				commands: float64(counters.AllCalls()) / n,
				scripts:  float64(counters.Calls["evalsha"]+counters.Calls["eval"]+counters.Calls["fcall"]) / n,
			})
		}
	}
	fmt.Fprintf(w, "### Throughput: %d no-op tasks over %d tenants far under their limits, concurrency %d, median of %d rounds\n\n",
		cfg.tasks, cfg.tenants, cfg.concurrency, cfg.rounds)
	fmt.Fprintln(w, "| worker | tasks/s (median) | rounds' range | vs plain asynq | dequeues per task | Redis commands per task | scripts per task |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	var plain float64
	for ki, k := range kinds {
		rs := results[ki]
		slices.SortFunc(rs, func(a, b round) int { return cmp.Compare(a.rate, b.rate) })
		m := rs[(len(rs)-1)/2]
		if ki == 0 {
			plain = m.rate
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f–%.0f | %.0f%% | %.2f | %.1f | %.2f |\n", k.name, m.rate, rs[0].rate, rs[len(rs)-1].rate,
			100*m.rate/plain, m.dequeues, m.commands, m.scripts)
	}
	fmt.Fprintln(w, "\n(Redis commands per task counts the commands run inside scripts too; scripts per task counts every EVALSHA/EVAL/FCALL: asynq's own dequeue and done scripts, and the limiter's decision.)")
	fmt.Fprintln(w)
	return nil
}
