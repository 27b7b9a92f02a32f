package enqueuecli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/buildtest"
	"github.com/quotaq/quotaq/internal/cmdline"
	"github.com/quotaq/quotaq/internal/redistest"
)

// quiet drops go-redis's own log lines (dial retries of the unreachable
// tests), as cmd/enqueue does.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	code := redistest.Main(m)
	buildtest.Cleanup()
	os.Exit(code)
}

// binary is cmd/enqueue, built once per test run.
func binary(t *testing.T) string {
	t.Helper()
	return buildtest.Command(t, "quotaq-enqueue", "github.com/quotaq/quotaq/cmd/enqueue")
}

// fixture is one test's own slice of the shared redis-server: its own
// limiter prefix and asynq queue, so tests run in parallel.
type fixture struct {
	t      *testing.T
	url    string
	prefix string
	queue  string
	rdb    *redis.Client
	insp   *asynq.Inspector
}

func setup(t *testing.T) *fixture {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	t.Cleanup(func() { insp.Close() })
	return &fixture{
		t:      t,
		url:    "redis://" + redistest.Addr(t) + "/0",
		prefix: prefix,
		queue:  "q-" + prefix,
		rdb:    rdb,
		insp:   insp,
	}
}

func (f *fixture) env() map[string]string {
	return map[string]string{"REDIS_URL": f.url, "QUOTAQ_PREFIX": f.prefix}
}

// run runs the command in-process with the fixture's Redis and prefix.
func (f *fixture) run(stdin string, args ...string) (code int, stdout, stderr string) {
	return f.runEnv(f.env(), stdin, args...)
}

func (f *fixture) runEnv(env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	f.t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, cmdIO{
		stdin:  strings.NewReader(stdin),
		stdout: &out,
		stderr: &errb,
		env:    cmdline.Env(env),
	})
	return code, out.String(), errb.String()
}

// exec runs the built binary with the fixture's Redis and prefix in its
// environment (and no other REDIS_* variable).
func (f *fixture) exec(stdin string, args ...string) (code int, stdout, stderr string) {
	return f.execEnv(f.env(), stdin, args...)
}

func (f *fixture) execEnv(env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	f.t.Helper()
	return buildtest.Run(f.t, binary(f.t), env, stdin, args...)
}

// list returns every task of queue in the given state.
func (f *fixture) list(queue string, state asynq.TaskState) []*asynq.TaskInfo {
	f.t.Helper()
	lists := map[asynq.TaskState]func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		asynq.TaskStatePending:   f.insp.ListPendingTasks,
		asynq.TaskStateScheduled: f.insp.ListScheduledTasks,
	}
	var all []*asynq.TaskInfo
	for page := 1; ; page++ {
		infos, err := lists[state](queue, asynq.PageSize(1000), asynq.Page(page))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return nil
		}
		if err != nil {
			f.t.Fatalf("list %s tasks of %s: %v", state, queue, err)
		}
		all = append(all, infos...)
		if len(infos) < 1000 {
			return all
		}
	}
}

// size returns how many tasks queue holds in any state (0 for a queue asynq
// has never seen).
func (f *fixture) size(queue string) int {
	f.t.Helper()
	queues, err := f.insp.Queues()
	if err != nil {
		f.t.Fatalf("list queues: %v", err)
	}
	if !slices.Contains(queues, queue) {
		return 0
	}
	qi, err := f.insp.GetQueueInfo(queue)
	if err != nil {
		f.t.Fatalf("queue info of %s: %v", queue, err)
	}
	return qi.Size
}
