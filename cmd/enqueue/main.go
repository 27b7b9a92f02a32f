// Command quotaq-enqueue enqueues tenants' tasks into asynq, one or in bulk,
// and shows and changes their policies and quotas. Run it with --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/enqueuecli"
)

// quiet drops go-redis's own log lines (dial retries): the command reports
// the error that matters, once, with the address.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func main() {
	redis.SetLogger(quiet{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := enqueuecli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
