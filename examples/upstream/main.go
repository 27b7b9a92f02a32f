// Command upstream is a fake third-party HTTP API for quotaq's examples: each
// API key (X-API-Key) may make its plan's number of requests in any window,
// and a caller past it gets 429 Too Many Requests with Retry-After and the
// RateLimit headers (package httplimit). GET /stats shows what each key was
// served and refused.
//
//	go run ./examples/upstream --plans acme=25/1s,globex=8/1s
//	curl -i -H 'X-API-Key: acme' http://127.0.0.1:8080/v1/work
//
// With no Redis configured it starts its own in-memory one on a free port: a
// third-party API keeps its limits to itself. REDIS_URL (or --redis-url)
// puts them in a Redis of your choice.
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
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/quotaq/quotaq/examples/internal/fakeapi"
	"github.com/quotaq/quotaq/internal/redisconn"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stderr, nil)
	stop()
	os.Exit(code)
}

// run is the whole command; it returns the exit code: 0 after a clean
// shutdown when ctx is done, 1 on a runtime error, 2 on a usage error. ready,
// if not nil, is told the address the server listens on.
func run(ctx context.Context, args []string, env func(string) (string, bool), stderr io.Writer, ready func(addr string)) int {
	var (
		rc       = redisconn.Config{AllowEmbedded: true, EmbeddedByDefault: true, EmbeddedAddr: "127.0.0.1:0", Env: env}
		addr     string
		planFlag string
		plans    string
		prefix   string
		latency  time.Duration
	)
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "upstream is a fake rate-limited HTTP API for quotaq's examples.\n\n"+
			"Routes: /v1/work (limited per X-API-Key, else per client IP), GET /stats, GET /healthz.\n\n"+
			"Usage: upstream [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	rc.RegisterFlags(fs)
	fs.StringVar(&addr, "addr", "127.0.0.1:8080", "`host:port` to listen on (:8080 for every interface)")
	fs.StringVar(&planFlag, "plan", "10/10s", "every API key's plan: N requests in any `N/DURATION` window")
	fs.StringVar(&plans, "plans", "", "plans of particular API keys: `key=N/DURATION,...` (e.g. acme=25/1s,globex=8/1s)")
	fs.StringVar(&prefix, "prefix", "fakeapi", "prefix of the limiter's Redis keys")
	fs.DurationVar(&latency, "latency", 0, "how long each /v1/work answer takes, to look like work")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(err error) int {
		fmt.Fprintf(stderr, "upstream: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		return usage(fmt.Errorf("unexpected argument %q (flags only; see --help)", fs.Arg(0)))
	}
	plan, err := fakeapi.ParsePlan(planFlag)
	if err != nil {
		return usage(fmt.Errorf("--plan: %w", err))
	}
	perKey, err := fakeapi.ParsePlans(plans)
	if err != nil {
		return usage(fmt.Errorf("--plans: %w", err))
	}
	if latency < 0 {
		return usage(fmt.Errorf("--latency %s must not be negative", latency))
	}
	if err := rc.Validate(); err != nil {
		return usage(err)
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	conn, err := rc.Open(ctx, logger)
	if err != nil {
		logger.Error("upstream: cannot reach Redis", "err", err)
		if errors.Is(err, redisconn.ErrInvalidConfig) {
			return 2
		}
		return 1
	}
	defer conn.Close()

	api, err := fakeapi.New(ctx, conn.Redis, fakeapi.Config{Plan: plan, Plans: perKey, Prefix: prefix, Latency: latency, Logger: logger})
	if err != nil {
		logger.Error("upstream: cannot store the plans", "err", err)
		return 1
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		logger.Error("upstream: cannot listen", "addr", addr, "err", err)
		return 1
	}
	srv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second}
	logger.Info("upstream: listening", "url", "http://"+ln.Addr().String(), "redis", conn.Addr,
		"plan", plan.String(), "plans", describe(perKey))
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		logger.Error("upstream: server stopped", "err", err)
		return 1
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		logger.Error("upstream: shutdown", "err", err)
		return 1
	}
	return 0
}

func describe(plans map[string]fakeapi.Plan) string {
	keys := make([]string, 0, len(plans))
	for k := range plans {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + plans[k].String()
	}
	return strings.Join(parts, ",")
}
