// Command existing-worker is an asynq worker with quotaq added, the way
// README.md's "Add quotaq to your asynq worker" shows it (runWorker, in
// worker.go): it sets two tenants' policies, enqueues their tasks with the
// tenant in a header, runs the worker until every task has run, and prints
// how fast each tenant's tasks ran.
//
//	go run ./examples/existing-worker
//
// It runs on an embedded in-memory Redis unless REDIS_URL is set.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/redisconn"
	"github.com/quotaq/quotaq/scheduler"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// schedule resets every tenant's quota at midnight UTC.
const schedule = `
entries:
  - name: daily-reset
    cron: "0 0 * * *"
    action: reset
    all: true
`

// policies are the tenants' policies and how many tasks each enqueues.
var policies = []struct {
	tenant string
	policy throttle.Policy
	tasks  int
}{
	{"acme", throttle.Policy{Rate: 5, Burst: 1}, 10},
	{"globex", throttle.Policy{Rate: 2, Burst: 1}, 5},
}

// runs records when each tenant's tasks ran.
type runs struct {
	mu    sync.Mutex
	at    map[string][]time.Time
	total int
	all   chan struct{} // closed when total tasks have run
}

func (r *runs) sendEmail(ctx context.Context, task *asynq.Task) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	tenant := task.Headers()[worker.TenantHeader]
	r.at[tenant] = append(r.at[tenant], time.Now())
	if r.total--; r.total == 0 {
		close(r.all)
	}
	return nil
}

// run is the whole example; it returns the exit code.
func run(ctx context.Context, env func(string) (string, bool), stdout, stderr io.Writer) int {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fail := func(err error) int {
		fmt.Fprintf(stderr, "existing-worker: %v\n", err)
		return 1
	}
	c := redisconn.Config{EmbeddedByDefault: true, EmbeddedAddr: "127.0.0.1:0", Env: env}
	conn, err := c.Open(ctx, logger)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	rdb := conn.Redis
	sched, err := scheduler.Parse("schedule", []byte(schedule))
	if err != nil {
		return fail(err)
	}

	// Policies are set once, by an admin (quotaq-enqueue policy set acme --rate 5 --burst 1).
	admin := throttle.New(rdb)
	r := &runs{at: map[string][]time.Time{}, all: make(chan struct{})}
	for _, p := range policies {
		if err := admin.SetPolicy(ctx, p.tenant, p.policy); err != nil {
			return fail(err)
		}
		r.total += p.tasks
	}
	// Producers put the tenant in the task's "tenant" header.
	client := asynq.NewClientFromRedisClient(rdb)
	for _, p := range policies {
		for i := range p.tasks {
			task := asynq.NewTaskWithHeaders("email:send", fmt.Appendf(nil, `{"n":%d}`, i),
				map[string]string{worker.TenantHeader: p.tenant})
			if _, err := client.EnqueueContext(ctx, task); err != nil {
				return fail(err)
			}
		}
	}
	fmt.Fprintf(stdout, "enqueued %d email:send tasks on %s\n", r.total, conn.Addr)

	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- runWorker(wctx, rdb, r.sendEmail, sched, logger) }()
	select {
	case <-r.all:
	case err := <-done:
		stop()
		return fail(fmt.Errorf("the worker stopped: %v", err))
	case <-time.After(time.Minute):
		stop()
		<-done
		return fail(fmt.Errorf("not every task ran within a minute"))
	}
	took := time.Since(start)
	stop()
	if err := <-done; err != nil {
		return fail(err)
	}
	return report(stdout, r, took)
}

// report prints each tenant's tasks and the rate they ran at, and returns
// 1 when a tenant's tasks did not all run once or ran faster than its
// policy (10 % allowed for the worker's clock against Redis's).
func report(stdout io.Writer, r *runs, took time.Duration) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	code := 0
	for _, p := range policies {
		at := r.at[p.tenant]
		rate := 0.0
		if n := len(at); n > 1 {
			rate = float64(n-int(p.policy.Burst)) / at[n-1].Sub(at[0]).Seconds()
		}
		fmt.Fprintf(stdout, "%-7s %2d tasks, policy %g/s burst %d: ran at %.1f/s\n", p.tenant, len(at), p.policy.Rate, p.policy.Burst, rate)
		if len(at) != p.tasks || rate > p.policy.Rate*1.1 {
			fmt.Fprintf(stdout, "FAIL: %s: %d of %d tasks ran, at %.1f/s against a policy of %g/s\n", p.tenant, len(at), p.tasks, rate, p.policy.Rate)
			code = 1
		}
	}
	if code == 0 {
		fmt.Fprintf(stdout, "OK: every task ran once, each tenant at its own rate, in %.1fs\n", took.Seconds())
	}
	return code
}
