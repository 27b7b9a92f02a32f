package scheduler

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/internal/wait"
)

// fakeClock is a Clock that moves only when told to.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Set moves the clock to t and wakes the waiters that are due.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(t) {
			kept = append(kept, w)
			continue
		}
		w.ch <- t
	}
	c.waiters = kept
}

// Waiters returns the deadlines of the pending After calls, earliest first.
func (c *fakeClock) Waiters() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, w := range c.waiters {
		out = append(out, w.at)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// waitDone waits for ctx (a Stop result) to be done.
func waitDone(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("Stop: in-flight enqueues did not return")
	}
}

func newLogger() (*slog.Logger, *wait.Buffer) {
	b := &wait.Buffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// asynqEnv is a queue of its own on the package's redis-server.
type asynqEnv struct {
	rdb       *redis.Client
	prefix    string
	queue     string
	inspector *asynq.Inspector
	connOpt   asynq.RedisClientOpt
}

func newAsynqEnv(t *testing.T) *asynqEnv {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	env := &asynqEnv{
		rdb:       rdb,
		prefix:    prefix,
		queue:     "q" + prefix,
		inspector: asynq.NewInspectorFromRedisClient(rdb),
		connOpt:   asynq.RedisClientOpt{Addr: redistest.Addr(t)},
	}
	return env
}

// client returns a new asynq client: one per scheduler replica.
func (e *asynqEnv) client(t *testing.T) *asynq.Client {
	t.Helper()
	c := asynq.NewClient(e.connOpt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// taskIDs returns the IDs of the queue's tasks in every state, sorted.
func (e *asynqEnv) taskIDs(t *testing.T) []string {
	t.Helper()
	var ids []string
	lists := []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		e.inspector.ListPendingTasks, e.inspector.ListActiveTasks, e.inspector.ListScheduledTasks,
		e.inspector.ListRetryTasks, e.inspector.ListArchivedTasks, e.inspector.ListCompletedTasks,
	}
	for _, list := range lists {
		infos, err := list(e.queue)
		if err != nil {
			if strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "not found") {
				return nil
			}
			t.Fatalf("inspector: %v", err)
		}
		for _, ti := range infos {
			ids = append(ids, ti.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

func mustParse(t *testing.T, yaml string) *Schedule {
	t.Helper()
	s, err := Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
