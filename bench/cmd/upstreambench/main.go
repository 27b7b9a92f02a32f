// Command upstreambench measures what an upstream API sees when the real
// quotaq-worker and quotaq-enqueue binaries run: it builds both from the
// repository, starts a redis-server of its own (appendonly, so it can be
// restarted from its AOF) and a fake upstream on loopback, and drains a
// backlog of http:call tasks through the worker's built-in handler in a few
// situations (a worker restart, a Redis restart, a paused queue, a shaped
// backlog, an upstream tighter than the policy, a quota reset, two workers,
// a slow upstream with and without a concurrency limit).
//
// The fake upstream records when every call arrives, per tenant, and
// answers 429 with Retry-After (whole seconds, rounded up) to a call its own
// token bucket for the tenant has no token for. Per tenant it reports:
//
//   - calls: every call that arrived, 429s included;
//   - worst excess: over every window between two arrivals a_i <= a_j, the
//     calls in it minus what the tenant's POLICY admits in it,
//     (j-i+1) - (burst + rate × (a_j - a_i)), the largest; <= 0 means the
//     calls never outran the policy (a lone call gives 1 - burst);
//   - achieved/allowed: calls answered 200 beyond the burst, per second from
//     the first call to the last 200, against min(policy rate, upstream
//     rate): a backlog paced exactly at the allowed rate gives 100 %;
//   - dequeues/task: the dequeues the worker's Throttler decided on, read
//     from the workers' /metrics (started with --per-tenant-metrics): tasks
//     let through (quotaq_worker_allowed_total) plus tasks put back without
//     running (quotaq_worker_throttled_total, except reason "upstream": those
//     ran, got a 429, and were counted as allowed). Each worker's counters
//     are read every quarter second and once before it is stopped, so a
//     restarted worker's counts are kept. asynq's own processed count cannot
//     serve: a task the Throttler puts back is moved by quotaq, and asynq's
//     completion of that dequeue fails (the task is no longer active), so
//     asynq counts it nowhere;
//   - drain: from the start of the enqueue (quota-reset: from the reset) to
//     the last task's 200.
//
// The concurrency scenarios have a table of their own: the upstream answers
// every call 200 ms after it arrives and counts the tenant's calls in
// flight (arrival +1, answer -1). Per tenant it reports the most in flight
// at once, the mean in flight from the first arrival to the last answer,
// the throughput over that span against the concurrency limit over the
// latency (5 / 200 ms = 25/s), 429s, dequeues/task and the drain.
//
// It prints Markdown tables, with a line of details per row below them.
//
//	cd bench && go run ./cmd/upstreambench -scenario all -out results/upstream-scenarios.md
//	cd bench && go run ./cmd/upstreambench -short -scenario steady,shaped
//	cd bench && go run ./cmd/upstreambench -scenario no-concurrency-limit,concurrency-limit
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/quotaq/quotaq/bench/internal/harness"
)

type config struct {
	scenarios   []string
	short       bool
	tightTasks  int           // tight-upstream's backlog (0: 600, -short 60)
	slowTasks   int           // the concurrency scenarios' backlog (0: 150, -short 30)
	maxDrain    time.Duration // give up on a backlog after this long
	workerFlags []string      // extra quotaq-worker flags for every worker
}

func main() {
	var cfg config
	var names, out, workerFlags string
	flag.StringVar(&names, "scenario", "all", "scenarios to run, comma-separated, or all: "+strings.Join(scenarioNames(), ", "))
	flag.BoolVar(&cfg.short, "short", false, "smaller backlogs and shorter outages, for a quick run (under 2 minutes in all)")
	flag.IntVar(&cfg.tightTasks, "tight-tasks", 0, "tasks of the tight-upstream backlog (default 600; -short 60)")
	flag.IntVar(&cfg.slowTasks, "slow-tasks", 0, "tasks of the no-concurrency-limit and concurrency-limit backlogs (default 150; -short 30)")
	flag.DurationVar(&cfg.maxDrain, "max-drain", 6*time.Minute, "give up on a backlog after this long and report it not drained")
	flag.StringVar(&workerFlags, "worker-flags", "", "extra quotaq-worker flags for every worker, space-separated (e.g. \"--concurrency 20\")")
	flag.StringVar(&out, "out", "", "also write the report (Markdown) to this file")
	flag.Parse()
	var err error
	if cfg.scenarios, err = pick(names); err != nil {
		fmt.Fprintln(os.Stderr, "upstreambench:", err)
		os.Exit(2)
	}
	if cfg.tightTasks < 0 || cfg.slowTasks < 0 || cfg.maxDrain <= 0 {
		fmt.Fprintf(os.Stderr, "upstreambench: -tight-tasks %d, -slow-tasks %d and -max-drain %s must be positive\n", cfg.tightTasks, cfg.slowTasks, cfg.maxDrain)
		os.Exit(2)
	}
	cfg.workerFlags = strings.Fields(workerFlags)
	var report bytes.Buffer
	w := io.MultiWriter(os.Stdout, &report)
	fmt.Fprintf(w, "`cd bench && go run ./cmd/upstreambench %s`\n\n", strings.Join(os.Args[1:], " "))
	results, err := run(w, cfg)
	if out != "" && len(results) > 0 {
		if werr := os.WriteFile(out, report.Bytes(), 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, "upstreambench:", werr)
			os.Exit(1)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstreambench:", err)
		os.Exit(1)
	}
}

func scenarioNames() []string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return n
}

// pick returns the scenarios named (comma-separated, or "all"), in the
// order they are listed in scenarios.
func pick(names string) ([]string, error) {
	if names == "all" {
		return scenarioNames(), nil
	}
	want := strings.Split(names, ",")
	for _, n := range want {
		if !slices.Contains(scenarioNames(), n) {
			return nil, fmt.Errorf("unknown scenario %q (use all or some of: %s)", n, strings.Join(scenarioNames(), ", "))
		}
	}
	var out []string
	for _, n := range scenarioNames() {
		if slices.Contains(want, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// run builds the binaries, runs cfg's scenarios one after another, each on
// a stage of its own, and writes the report to w. A scenario that fails is
// reported as such and the others still run; the error says which failed.
func run(w io.Writer, cfg config) ([]result, error) {
	bins, err := build()
	if err != nil {
		return nil, err
	}
	defer bins.remove()
	fmt.Fprintf(w, "quotaq %s; redis-server %s; %s; %s at start\n\n", orNone(bins.commit), redisVersion(), runtime.Version(), harness.Load())
	start := time.Now()
	var results []result
	var failed []string
	for _, sc := range scenarios {
		if !slices.Contains(cfg.scenarios, sc.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "upstreambench: %s: %s\n", sc.name, sc.what)
		rs, err := runOne(cfg, bins, sc)
		if err != nil {
			failed = append(failed, sc.name)
			rs = append(rs, result{scenario: sc.name, err: err})
		}
		results = append(results, rs...)
	}
	rated, inFlight := splitResults(results)
	table(w, rated, result.row,
		"| scenario | tenant | policy | upstream | tasks | calls | 429s | worst excess | achieved/allowed | dequeues/task | drain |",
		"|---|---|---|---|---:|---:|---:|---|---|---:|---|")
	table(w, inFlight, result.flightRow,
		"| scenario | tenant | policy | upstream | workers | tasks | most in flight | mean in flight | throughput | of limit / latency | 429s | dequeues/task | drain |",
		"|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|")
	for _, sc := range scenarios {
		if slices.Contains(cfg.scenarios, sc.name) {
			fmt.Fprintf(w, "- %s: %s.\n", sc.name, sc.what)
		}
	}
	fmt.Fprintln(w)
	for _, r := range results {
		fmt.Fprintln(w, r.detail())
	}
	fmt.Fprintf(w, "\n%s in all; %s at the end\n", time.Since(start).Round(time.Second), harness.Load())
	if len(failed) > 0 {
		return results, fmt.Errorf("failed: %s", strings.Join(failed, ", "))
	}
	return results, nil
}

// table writes a Markdown table of results, one row each, under its head
// lines; no results, no table.
func table(w io.Writer, results []result, row func(result) string, head ...string) {
	if len(results) == 0 {
		return
	}
	for _, h := range head {
		fmt.Fprintln(w, h)
	}
	for _, r := range results {
		fmt.Fprintln(w, row(r))
	}
	fmt.Fprintln(w)
}

// splitResults separates the rows of the rate table from those of the
// in-flight table: the tenants whose upstream answers after a latency.
func splitResults(results []result) (rated, inFlight []result) {
	for _, r := range results {
		if r.tenant.upLatency > 0 {
			inFlight = append(inFlight, r)
		} else {
			rated = append(rated, r)
		}
	}
	return rated, inFlight
}

// runOne runs sc on a stage of its own, and shows the workers' last log
// lines when it fails.
func runOne(cfg config, bins *binaries, sc scenario) ([]result, error) {
	s, err := newStage(cfg, bins)
	if err != nil {
		return nil, err
	}
	defer s.close()
	rs, err := sc.run(s)
	if err != nil {
		for _, wk := range s.workers {
			fmt.Fprintf(os.Stderr, "upstreambench: %s: log of worker %s:\n%s\n", sc.name, wk.name, tail(wk.logs.String(), 20))
		}
	}
	return rs, err
}

// redisVersion is the version of the redis-server on PATH.
func redisVersion() string {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return "(unknown version)"
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return strings.TrimSpace(string(out))
}
