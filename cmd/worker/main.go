// Command quotaq-worker runs asynq tasks with per-tenant throttling: before a
// task runs, its tenant's limiter is asked; a task that must wait goes back to
// its queue, unchanged and not failed, and comes back at its own slot. It
// runs the generic http:call task type (which honours 429 and Retry-After),
// the scheduler's quota tasks, and optionally a quota schedule. Run it with
// --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/quotaq/quotaq/internal/cmdline"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], cmdline.OSEnv(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
