// Command quickstart shows quotaq end to end in one process, in about 25
// seconds, with nothing installed but Go:
//
//	go run ./examples/quickstart
//
// It starts an embedded Redis (or uses REDIS_URL), a fake upstream API that
// answers 429 past each API key's plan (package httplimit), a worker that
// throttles each tenant's tasks (package worker) and a scheduler that resets a
// quota every few seconds (package scheduler). It enqueues a backlog for three
// tenants with different policies, shows a live table per tenant, and ends
// with a summary: every task processed, each tenant at its policy's rate, and
// no 429 from the upstream. It exits 1 when the summary shows a problem.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/quotaq/quotaq/internal/redisconn"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr, isTerminal(os.Stdout))
	stop()
	os.Exit(code)
}

// run is the command: exit code 0 when the run showed what it should, 1 when
// the summary lists problems or something failed, 2 on a usage error.
func run(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer, tty bool) int {
	rc := redisconn.Config{AllowEmbedded: true, EmbeddedByDefault: true, EmbeddedAddr: "127.0.0.1:0", Env: env}
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `quickstart runs quotaq end to end in one process: an embedded Redis (or
REDIS_URL), a fake rate-limited upstream API, a throttled worker, the quota
scheduler and a backlog for three tenants. It ends by itself with a summary.

Usage: go run ./examples/quickstart [flags]

Flags:
`)
		fs.PrintDefaults()
	}
	short := fs.Bool("short", false, "a smaller backlog, done in about 5 seconds (what CI runs)")
	verbose := fs.Bool("v", false, "log the worker's warnings and the scheduler's firings")
	rc.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "quickstart: unexpected argument %q (flags only; see --help)\n", fs.Arg(0))
		return 2
	}
	if err := rc.Validate(); err != nil {
		fmt.Fprintf(stderr, "quickstart: %v\n", err)
		return 2
	}
	sc := fullScenario()
	if *short {
		sc = shortScenario()
	}
	level := slog.LevelError
	if *verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	fmt.Fprintf(stdout, "quotaq quickstart: %d tasks for %d tenants; each calls a fake upstream API that answers 429 past the tenant's plan.\n",
		sc.total(), len(sc.Tenants))
	fmt.Fprintf(stdout, "The worker keeps each tenant to its policy; the scheduler resets the quotas (%s).\n\n", sc.ResetEvery)
	table := &liveTable{w: stdout, tty: tty, every: 5 * time.Second}
	started := false
	s, err := quickstart(ctx, config{
		Scenario: sc,
		Redis:    rc,
		Logger:   logger,
		Tick:     250 * time.Millisecond,
		Draw: func(s Summary) {
			if !started {
				started = true
				where := s.Redis
				if s.Embedded {
					where += " (embedded, in memory)"
				}
				fmt.Fprintf(stdout, "redis %s, upstream %s\n\n", where, s.Upstream)
			}
			if s.Final {
				if tty {
					table.draw(s)
				} else {
					render(stdout, s)
				}
				return
			}
			table.draw(s)
		},
	})
	if err != nil {
		fmt.Fprintf(stderr, "quickstart: %v\n", err)
		if errors.Is(err, redisconn.ErrInvalidConfig) {
			return 2
		}
		return 1
	}
	return summarize(stdout, s)
}

// summarize prints the verdict under the final table.
func summarize(w io.Writer, s Summary) int {
	fmt.Fprintln(w)
	problems := s.Problems()
	if len(problems) == 0 {
		var rethrottled int64
		for _, r := range s.Rows {
			rethrottled += r.Rethrottled
		}
		fmt.Fprintf(w, "OK: all %d tasks processed in %s, every tenant within its policy, no 429 from the upstream.\n",
			s.Processed(), s.Elapsed.Round(100*time.Millisecond))
		fmt.Fprintf(w, "Throttled tasks went back to their queue to run at their own slot (not failed, not retried); %d were throttled again when they came back.\n", rethrottled)
		return 0
	}
	for _, p := range problems {
		fmt.Fprintf(w, "PROBLEM: %s\n", p)
	}
	return 1
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
