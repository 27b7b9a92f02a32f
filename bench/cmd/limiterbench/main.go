// Command limiterbench measures limiter decisions on one redis-server: quotaq's
// token bucket (alone, with its refusal cache, with batching, with both)
// against go-redis/redis_rate v10 and a trivial "return 1" script, at several
// numbers of concurrent callers; then the memory of idle tenants, their expiry,
// and decisions with 100,000 stored policies. It prints Markdown tables.
//
//	cd bench && go run ./cmd/limiterbench -duration 3s
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/bench/internal/harness"
	"github.com/quotaq/quotaq/throttle"
)

func main() {
	var (
		addr     = flag.String("addr", "", "use this redis-server (host:port) instead of starting one; it is FLUSHALLed")
		duration = flag.Duration("duration", 3*time.Second, "measured time per cell")
		warmup   = flag.Duration("warmup", 300*time.Millisecond, "unmeasured time before each cell")
		callers  = flag.String("callers", "1,16,64,256", "numbers of concurrent callers, comma-separated")
		tenants  = flag.Int("tenants", 1000, "tenants the decisions are spread over (under their limits)")
		overTen  = flag.Int("over-tenants", 100, "tenants the decisions are spread over (over their limits, 10/s each)")
		rounds   = flag.Int("rounds", 2, "rounds; the cells of all limiters are interleaved and the median round is shown")
		modes    = flag.String("modes", strings.Join(modeNames(), ","), "limiters to measure, comma-separated")
		parts    = flag.String("parts", "under,over,scale", "what to run: under (tenants under their limits), over (tenants over them), scale (memory, expiry, 100,000 policies)")
		policies = flag.Int("policies", 100_000, "stored policies for the scale part")
	)
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: limiterbench [flags]\n\nModes: %s\n\n", strings.Join(modeNames(), ", "))
		flag.PrintDefaults()
	}
	flag.Parse()
	cs, err := parseInts(*callers)
	if err != nil || *tenants < 1 || *overTen < 1 || *rounds < 1 || *duration <= 0 || *policies < *tenants {
		fmt.Fprintf(os.Stderr, "limiterbench: bad flags (callers %q: %v; tenants %d must be >= 1 and <= policies %d; duration %s must be > 0)\n",
			*callers, err, *tenants, *policies, *duration)
		os.Exit(2)
	}
	var ms []mode
	for _, name := range strings.Split(*modes, ",") {
		m, ok := modeByName(name)
		if !ok {
			fmt.Fprintf(os.Stderr, "limiterbench: unknown mode %q (use %s)\n", name, strings.Join(modeNames(), ", "))
			os.Exit(2)
		}
		ms = append(ms, m)
	}
	if err := run(os.Stdout, config{addr: *addr, d: *duration, warmup: *warmup, callers: cs, tenants: *tenants,
		modes: ms, parts: strings.Split(*parts, ","), policies: *policies, overTenants: *overTen, rounds: *rounds}); err != nil {
		fmt.Fprintln(os.Stderr, "limiterbench:", err)
		os.Exit(1)
	}
}

type config struct {
	addr     string
	d        time.Duration
	warmup   time.Duration
	callers  []int
	tenants  int
	modes    []mode
	parts    []string
	policies int

	overTenants int
	rounds      int
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// decideFunc makes one decision for tenant and reports whether it admitted.
type decideFunc func(ctx context.Context, tenant string) (bool, error)

// mode is one limiter under test. setup prepares it for a run where every
// tenant gets rate/s with a burst of rate, and returns its decision.
type mode struct {
	name  string
	setup func(ctx context.Context, rdb *redis.Client, tenants []string, rate int) (decideFunc, error)
}

var trivial = redis.NewScript("return 1")

func quotaqMode(name string, opts ...throttle.Option) mode {
	return mode{name, func(ctx context.Context, rdb *redis.Client, tenants []string, rate int) (decideFunc, error) {
		p := throttle.PerSecond(int64(rate))
		l := throttle.New(rdb, append([]throttle.Option{throttle.WithPrefix("bq"), throttle.WithDefaultPolicy(p)}, opts...)...)
		// every tenant has its own policy: the look-up is part of the cost
		if err := setPolicies(ctx, l, tenants, p); err != nil {
			return nil, err
		}
		return func(ctx context.Context, tenant string) (bool, error) {
			r, err := l.Allow(ctx, tenant)
			return r.Allowed, err
		}, nil
	}}
}

var allModes = []mode{
	{"trivial script", func(ctx context.Context, rdb *redis.Client, tenants []string, rate int) (decideFunc, error) {
		return func(ctx context.Context, tenant string) (bool, error) {
			return true, trivial.Run(ctx, rdb, []string{"triv:" + tenant}).Err()
		}, nil
	}},
	{"redis_rate v10", func(ctx context.Context, rdb *redis.Client, tenants []string, rate int) (decideFunc, error) {
		rl := redis_rate.NewLimiter(rdb)
		limit := redis_rate.PerSecond(rate)
		return func(ctx context.Context, tenant string) (bool, error) {
			r, err := rl.Allow(ctx, tenant, limit)
			if err != nil {
				return false, err
			}
			return r.Allowed > 0, nil
		}, nil
	}},
	quotaqMode("quotaq"),
	quotaqMode("quotaq +cache", throttle.WithRefusalCache(time.Second)),
	quotaqMode("quotaq +batch", throttle.WithBatching(0, 0)),
	quotaqMode("quotaq +cache +batch", throttle.WithRefusalCache(time.Second), throttle.WithBatching(0, 0)),
	quotaqMode("quotaq +lease", throttle.WithLeases(100*time.Millisecond, 0)),
	quotaqMode("quotaq +lease +batch", throttle.WithLeases(100*time.Millisecond, 0), throttle.WithBatching(0, 0)),
}

func modeNames() []string {
	var n []string
	for _, m := range allModes {
		n = append(n, strings.ReplaceAll(m.name, " ", ""))
	}
	return n
}

func modeByName(s string) (mode, bool) {
	for _, m := range allModes {
		if strings.ReplaceAll(m.name, " ", "") == strings.ReplaceAll(s, " ", "") {
			return m, true
		}
	}
	return mode{}, false
}

// setPolicies stores p as the own policy of every tenant, from 32 callers.
func setPolicies(ctx context.Context, l *throttle.Limiter, tenants []string, p throttle.Policy) error {
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Go(func() {
			for i := g; i < len(tenants); i += 32 {
				if err := l.SetPolicy(ctx, tenants[i], p); err != nil {
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

func tenantIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "tenant-" + strconv.Itoa(i)
	}
	return ids
}

func run(w io.Writer, cfg config) error {
	ctx := context.Background()
	srv, err := harness.StartServer(cfg.addr)
	if err != nil {
		return err
	}
	defer srv.Stop()
	maxCallers := 0
	for _, c := range cfg.callers {
		maxCallers = max(maxCallers, c)
	}
	// one connection per caller: no caller waits for another's connection
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: maxCallers + 8})
	defer rdb.Close()
	fmt.Fprintf(w, "redis-server %s on %s; client and server on one machine, %s at start\n\n",
		harness.Version(ctx, rdb), srv.Addr, harness.Load())
	for _, part := range cfg.parts {
		switch part {
		case "under":
			fmt.Fprintf(w, "### Tenants under their limits (every decision admits): %d tenants, %s a cell, median of %d rounds\n\n", cfg.tenants, cfg.d, cfg.rounds)
			if err := decisions(ctx, w, rdb, cfg, cfg.tenants, 1_000_000); err != nil {
				return err
			}
		case "over":
			fmt.Fprintf(w, "### Tenants over their limits (10/s each, demand far above): %d tenants, %s a cell, median of %d rounds\n\n", cfg.overTenants, cfg.d, cfg.rounds)
			if err := decisions(ctx, w, rdb, cfg, cfg.overTenants, 10); err != nil {
				return err
			}
		case "scale":
			if err := scale(ctx, w, rdb, cfg); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown part %q (use under, over, scale)", part)
		}
	}
	fmt.Fprintf(w, "%s at the end\n", harness.Load())
	return nil
}

// cell is one limiter at one number of callers, in one round.
type cell struct {
	o       harness.Outcome
	scripts int64   // script calls on the server
	perCall float64 // µs per script call
	cpu     float64 // server CPU µs per decision
}

// decisions measures every mode at every number of callers, n tenants at
// rate/s, in cfg.rounds rounds with the modes interleaved, and prints the
// median round of each (by decisions/s).
func decisions(ctx context.Context, w io.Writer, rdb *redis.Client, cfg config, n, rate int) error {
	ids := tenantIDs(n)
	results := map[string][]cell{}
	key := func(m mode, callers int) string { return m.name + "/" + strconv.Itoa(callers) }
	for range cfg.rounds {
		for _, callers := range cfg.callers {
			for _, m := range cfg.modes {
				c, err := measureCell(ctx, rdb, cfg, m, ids, callers, rate)
				if err != nil {
					return err
				}
				results[key(m, callers)] = append(results[key(m, callers)], c)
			}
		}
	}
	fmt.Fprintln(w, "| limiter | callers | decisions/s | admitted/s | p50 µs | p99 µs | scripts/decision | script µs/call | Redis CPU µs/decision | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, m := range cfg.modes {
		for _, callers := range cfg.callers {
			cs := results[key(m, callers)]
			slices.SortFunc(cs, func(a, b cell) int { return cmp.Compare(a.o.PerSecond(), b.o.PerSecond()) })
			c := cs[(len(cs)-1)/2]
			perCall := "-"
			if c.scripts > 0 {
				perCall = strconv.FormatFloat(c.perCall, 'f', 1, 64)
			}
			// (scripts/decision: three significant digits below 0.01, where
			// a limiter that answers locally would otherwise show 0.00)
			perDecision := float64(c.scripts) / float64(c.o.Calls)
			scripts := strconv.FormatFloat(perDecision, 'f', 2, 64)
			if perDecision > 0 && perDecision < 0.01 {
				scripts = strconv.FormatFloat(perDecision, 'g', 3, 64)
			}
			fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %s | %s | %s | %s | %.1f | %d |\n", m.name, callers, c.o.PerSecond(),
				float64(c.o.Allowed)/c.o.Elapsed.Seconds(), harness.Micros(c.o.P50), harness.Micros(c.o.P99),
				scripts, perCall, c.cpu, c.o.Errors)
		}
	}
	fmt.Fprintln(w)
	return nil
}

// measureCell runs one mode at one number of callers on a flushed server.
func measureCell(ctx context.Context, rdb *redis.Client, cfg config, m mode, ids []string, callers, rate int) (cell, error) {
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return cell{}, err
	}
	decide, err := m.setup(ctx, rdb, ids, rate)
	if err != nil {
		return cell{}, fmt.Errorf("%s: %w", m.name, err)
	}
	fn := func(ctx context.Context, g, i int) (bool, error) {
		return decide(ctx, ids[(g*7919+i)%len(ids)])
	}
	harness.Run(ctx, callers, cfg.warmup, fn)
	if err := harness.ResetStats(ctx, rdb); err != nil {
		return cell{}, err
	}
	before, err := harness.ReadCounters(ctx, rdb)
	if err != nil {
		return cell{}, err
	}
	o := harness.Run(ctx, callers, cfg.d, fn)
	after, err := harness.ReadCounters(ctx, rdb)
	if err != nil {
		return cell{}, err
	}
	calls, usec := after.Scripts()
	c := cell{o: o, scripts: calls, cpu: float64(after.CPUUsec-before.CPUUsec) / float64(o.Calls)}
	if calls > 0 {
		c.perCall = float64(usec) / float64(calls)
	}
	return c, nil
}
