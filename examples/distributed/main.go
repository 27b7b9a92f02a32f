// Command distributed shows that quotaq's limits hold across processes: two
// quotaq-worker processes serve one queue on one Redis, tasks are enqueued
// with the quotaq-enqueue CLI, and every tenant's calls reach the upstream API
// at its policy's rate in total, not per worker.
//
//	go run ./examples/distributed
//
// It builds the two commands with the go tool, starts an embedded Redis (or
// uses REDIS_URL), the examples' fake upstream API, and the two workers; sets
// the tenants' policies and enqueues their backlog through the CLI; and ends
// when the upstream has served every task, with a summary of who did what.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/quotaq/quotaq/examples/internal/fakeapi"
	"github.com/quotaq/quotaq/examples/internal/sandbox"
	"github.com/quotaq/quotaq/internal/redisconn"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// tenant is one customer: its policy (a rate, burst 1), the upstream's plan
// for its API key, and its backlog.
type tenant struct {
	ID    string
	Rate  float64
	Plan  fakeapi.Plan
	Tasks int
}

type scenario struct {
	Tenants []tenant
	Workers int
	Timeout time.Duration
}

func fullScenario() scenario {
	return scenario{
		Tenants: []tenant{
			{ID: "acme", Rate: 20, Plan: fakeapi.Plan{N: 35, Per: time.Second}, Tasks: 300},
			{ID: "globex", Rate: 5, Plan: fakeapi.Plan{N: 10, Per: time.Second}, Tasks: 75},
		},
		Workers: 2,
		Timeout: 90 * time.Second,
	}
}

func shortScenario() scenario {
	return scenario{
		Tenants: []tenant{
			{ID: "acme", Rate: 20, Plan: fakeapi.Plan{N: 35, Per: time.Second}, Tasks: 60},
			{ID: "globex", Rate: 5, Plan: fakeapi.Plan{N: 10, Per: time.Second}, Tasks: 15},
		},
		Workers: 2,
		Timeout: 90 * time.Second,
	}
}

func run(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	rc := redisconn.Config{AllowEmbedded: true, EmbeddedByDefault: true, EmbeddedAddr: "127.0.0.1:0", Env: env}
	fs := flag.NewFlagSet("distributed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `distributed runs two quotaq-worker processes on one Redis (embedded, or
REDIS_URL), enqueues tasks with quotaq-enqueue, and shows that each tenant's
limit holds across both workers.

Usage: go run ./examples/distributed [flags]

Flags:
`)
		fs.PrintDefaults()
	}
	short := fs.Bool("short", false, "a smaller backlog, done in about 5 seconds (what CI runs)")
	verbose := fs.Bool("v", false, "show the workers' logs")
	fs.StringVar(&rc.URL, "redis-url", "", "Redis URL, redis://[user:password@]host:port/db (env REDIS_URL; default: an embedded in-memory Redis)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "distributed: unexpected argument %q (flags only; see --help)\n", fs.Arg(0))
		return 2
	}
	if err := rc.Validate(); err != nil {
		fmt.Fprintf(stderr, "distributed: %v\n", err)
		return 2
	}
	sc := fullScenario()
	if *short {
		sc = shortScenario()
	}
	logs := io.Discard
	if *verbose {
		logs = stderr
	}
	s, err := distributed(ctx, sc, rc, env, stdout, logs)
	if err != nil {
		fmt.Fprintf(stderr, "distributed: %v\n", err)
		if errors.Is(err, redisconn.ErrInvalidConfig) {
			return 2
		}
		return 1
	}
	fmt.Fprintln(stdout)
	if p := s.Problems(); len(p) > 0 {
		for _, line := range p {
			fmt.Fprintf(stdout, "PROBLEM: %s\n", line)
		}
		return 1
	}
	fmt.Fprintf(stdout, "OK: %d workers shared every tenant's limit: each tenant's calls reached the upstream at its policy's rate in total, and the upstream answered no 429.\n", sc.Workers)
	return 0
}

// Row is one tenant in the table.
type Row struct {
	ID       string
	Rate     float64 // policy
	Plan     fakeapi.Plan
	Tasks    int
	Served   int64   // by the upstream, 2xx
	Refused  int64   // by the upstream, 429
	Achieved float64 // served per second at the upstream, first to last
	ByWorker []int64 // tasks each worker let through
}

// Summary is the end of a run.
type Summary struct {
	Rows     []Row
	Elapsed  time.Duration
	TimedOut bool
	Stopped  bool
}

// Problems lists what went wrong: tasks not served, a 429, a tenant above its
// rate in total, a worker that took no part.
func (s Summary) Problems() []string {
	var out []string
	if s.Stopped {
		out = append(out, "interrupted before the backlog was done")
	} else if s.TimedOut {
		out = append(out, fmt.Sprintf("the backlog was not done after %s", s.Elapsed.Round(time.Second)))
	}
	for _, r := range s.Rows {
		if r.Served < int64(r.Tasks) {
			out = append(out, fmt.Sprintf("%s: the upstream served %d of %d tasks", r.ID, r.Served, r.Tasks))
		}
		if r.Refused > 0 {
			out = append(out, fmt.Sprintf("%s: the upstream answered 429 %d times: the workers together sent more than the plan %s", r.ID, r.Refused, r.Plan))
		}
		if r.Served >= 10 && r.Achieved > r.Rate*1.25 {
			out = append(out, fmt.Sprintf("%s: %.1f/s reached the upstream, above the policy's %g/s: the workers did not share the limit", r.ID, r.Achieved, r.Rate))
		}
		for i, n := range r.ByWorker {
			if n == 0 && r.Tasks >= 10 {
				out = append(out, fmt.Sprintf("%s: worker %d ran none of its tasks: the demo did not run on two workers", r.ID, i+1))
			}
		}
	}
	return out
}

// arrivals records when the upstream served each key, for the achieved rate
// where it matters: at the API.
type arrivals struct {
	mu    sync.Mutex
	first map[string]time.Time
	last  map[string]time.Time
	n     map[string]int
}

func (a *arrivals) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &status{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		key := r.Header.Get(fakeapi.KeyHeader)
		if r.URL.Path != "/v1/work" || rec.code >= 300 || key == "" {
			return
		}
		now := time.Now()
		a.mu.Lock()
		if a.n[key] == 0 {
			a.first[key] = now
		}
		a.last[key] = now
		a.n[key]++
		a.mu.Unlock()
	})
}

func (a *arrivals) rate(key string) float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	span := a.last[key].Sub(a.first[key]).Seconds()
	if a.n[key] < 2 || span <= 0 {
		return 0
	}
	return float64(a.n[key]-1) / span
}

type status struct {
	http.ResponseWriter
	code int
}

func (s *status) WriteHeader(code int) { s.code = code; s.ResponseWriter.WriteHeader(code) }

func distributed(ctx context.Context, sc scenario, rc redisconn.Config, env func(string) (string, bool), out, logs io.Writer) (Summary, error) {
	logger := slog.New(slog.NewTextHandler(logs, nil))
	conn, err := rc.Open(ctx, logger)
	if err != nil {
		return Summary{}, err
	}
	defer conn.Close()
	redisURL := "redis://" + strings.TrimPrefix(conn.Addr, "redis://")
	if !conn.Embedded {
		redisURL = rc.URL
		if redisURL == "" {
			redisURL, _ = env("REDIS_URL")
		}
		if redisURL == "" {
			return Summary{}, fmt.Errorf("%w: this example passes Redis to its workers as a URL: set REDIS_URL (Sentinel and Cluster are not supported here)", redisconn.ErrInvalidConfig)
		}
	}
	box := sandbox.New("distributed")
	prefix, queue := box.Prefix, box.Queue("")
	if !conn.Embedded {
		defer func() { _ = box.Cleanup(conn.Redis) }()
	}

	dir, err := os.MkdirTemp("", "quotaq-distributed-")
	if err != nil {
		return Summary{}, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(out, "building quotaq-worker and quotaq-enqueue ...\n")
	workerBin, enqueueBin, err := buildCommands(ctx, dir)
	if err != nil {
		return Summary{}, err
	}

	// The upstream API.
	plans := map[string]fakeapi.Plan{}
	for _, t := range sc.Tenants {
		plans[t.ID] = t.Plan
	}
	api, err := fakeapi.New(ctx, conn.Redis, fakeapi.Config{Plans: plans, Prefix: prefix + "-upstream", Logger: logger})
	if err != nil {
		return Summary{}, err
	}
	seen := &arrivals{first: map[string]time.Time{}, last: map[string]time.Time{}, n: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Summary{}, err
	}
	upstream := &http.Server{Handler: seen.wrap(api.Handler()), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = upstream.Serve(ln) }()
	defer upstream.Close()
	upstreamURL := "http://" + ln.Addr().String()
	fmt.Fprintf(out, "redis %s%s, upstream %s\n", conn.Addr, map[bool]string{true: " (embedded, in memory)"}[conn.Embedded], upstreamURL)

	// Policies, through the CLI.
	for _, t := range sc.Tenants {
		args := []string{"policy", "set", t.ID, "--rate", strconv.FormatFloat(t.Rate, 'f', -1, 64), "--burst", "1", "--prefix", prefix}
		fmt.Fprintf(out, "$ quotaq-enqueue %s\n", strings.Join(args, " "))
		if _, err := enqueueCLI(ctx, enqueueBin, redisURL, args...); err != nil {
			return Summary{}, err
		}
	}

	// The workers.
	var workers []*process
	defer func() {
		for _, w := range workers {
			w.stop()
		}
	}()
	for i := 1; i <= sc.Workers; i++ {
		name := fmt.Sprintf("worker %d", i)
		w, err := startWorker(workerBin, name, redisURL, logs,
			"--prefix", prefix, "--queues", queue+"=1", "--concurrency", "10",
			"--task-check-interval", "20ms", "--log-level", "warn")
		if err != nil {
			return Summary{}, err
		}
		workers = append(workers, w)
		fmt.Fprintf(out, "started %s (pid %d, metrics http://%s/metrics)\n", name, w.cmd.Process.Pid, w.metrics)
	}

	// The backlog, through the CLI.
	start := time.Now()
	for _, t := range sc.Tenants {
		payload, _ := json.Marshal(map[string]any{
			"tenant": t.ID, "method": "POST", "url": upstreamURL + "/v1/work",
			"header": map[string]string{fakeapi.KeyHeader: t.ID},
		})
		args := []string{"--tenant", t.ID, "--type", "http:call", "--count", strconv.Itoa(t.Tasks), "--queue", queue, "--progress", "never", "--payload", string(payload)}
		fmt.Fprintf(out, "$ quotaq-enqueue --tenant %s --type http:call --count %d --queue %s --payload '%s'\n", t.ID, t.Tasks, queue, payload)
		if _, err := enqueueCLI(ctx, enqueueBin, redisURL, args...); err != nil {
			return Summary{}, err
		}
	}
	fmt.Fprintln(out)

	snapshot := func() Summary {
		s := Summary{Elapsed: time.Since(start)}
		st := api.Stats()
		var counts []map[string]int64
		for _, w := range workers {
			counts = append(counts, w.allowed())
		}
		for _, t := range sc.Tenants {
			r := Row{ID: t.ID, Rate: t.Rate, Plan: t.Plan, Tasks: t.Tasks, Served: st[t.ID].Served, Refused: st[t.ID].Refused, Achieved: seen.rate(t.ID)}
			for _, c := range counts {
				r.ByWorker = append(r.ByWorker, c[t.ID])
			}
			s.Rows = append(s.Rows, r)
		}
		return s
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.After(sc.Timeout)
	var s Summary
	for {
		var stopped, timedOut bool
		select {
		case <-ctx.Done():
			stopped = true
		case <-deadline:
			timedOut = true
		case <-tick.C:
		}
		s = snapshot()
		s.Stopped, s.TimedOut = stopped, timedOut
		render(out, s)
		done := true
		for _, r := range s.Rows {
			done = done && r.Served >= int64(r.Tasks)
		}
		if done || stopped || timedOut {
			break
		}
	}

	// What the CLI sees, then a graceful stop.
	if status, err := enqueueCLI(context.WithoutCancel(ctx), enqueueBin, redisURL, "status", "--prefix", prefix, "--queues", queue); err == nil {
		fmt.Fprintf(out, "\n$ quotaq-enqueue status --prefix %s --queues %s\n%s", prefix, queue, status)
	}
	for _, w := range workers {
		w.stop()
	}
	return s, nil
}

func render(w io.Writer, s Summary) {
	fmt.Fprintf(w, "after %s:\n", s.Elapsed.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  tenant\tpolicy\tupstream plan\tserved\trate at the upstream\t429s\tran on worker 1, 2, ...\n")
	for _, r := range s.Rows {
		parts := make([]string, len(r.ByWorker))
		for i, n := range r.ByWorker {
			parts[i] = strconv.FormatInt(n, 10)
		}
		fmt.Fprintf(tw, "  %s\t%g/s\t%s\t%d/%d\t%.1f/s\t%d\t%s\n", r.ID, r.Rate, r.Plan, r.Served, r.Tasks, r.Achieved, r.Refused, strings.Join(parts, ", "))
	}
	_ = tw.Flush()
}
