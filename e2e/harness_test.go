package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// stage is one scenario's world: a private redis-server, the fake upstream,
// and the test's own view of Redis (asynq's inspector, the limiter).
type stage struct {
	srv  *redistest.Server
	env  []string // REDIS_URL for the binaries
	rdb  *redis.Client
	insp *asynq.Inspector
	lim  *throttle.Limiter
	up   *upstream
}

// newStage starts a private redis-server with extra configuration lines.
func newStage(t *testing.T, conf ...string) *stage {
	t.Helper()
	srv, err := redistest.Start(t.TempDir(), conf...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	s := &stage{srv: srv, env: []string{"REDIS_URL=redis://" + srv.Addr + "/0"}, up: newUpstream(t)}
	s.rdb = redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = s.rdb.Close() })
	s.insp = asynq.NewInspectorFromRedisClient(s.rdb)
	s.lim = throttle.New(s.rdb)
	return s
}

// policy sets tenant's policy through quotaq-enqueue, as an operator would.
func (s *stage) policy(t *testing.T, tenant string, p throttle.Policy) {
	t.Helper()
	args := []string{"policy", "set", tenant, "--rate", fmt.Sprint(p.Rate), "--burst", fmt.Sprint(p.Burst)}
	if p.Quota > 0 {
		args = append(args, "--quota", fmt.Sprint(p.Quota))
	}
	if p.QuotaPeriod > 0 {
		args = append(args, "--quota-period", p.QuotaPeriod.String())
	}
	mustEnqueue(t, s.env, "", args...)
}

// enqueue enqueues tasks through quotaq-enqueue --file -.
func (s *stage) enqueue(t *testing.T, tasks []task) {
	t.Helper()
	mustEnqueue(t, s.env, s.up.ndjson(tasks), "--file", "-")
}

// tasksFor returns n tasks of tenant in queue, numbered from first.
func tasksFor(tenant, queue string, first, n int) []task {
	ts := make([]task, n)
	for i := range ts {
		ts[i] = task{Seq: first + i, Tenant: tenant, Queue: queue}
	}
	return ts
}

// ageLeases makes every lease of queue look expired a minute ago, as if a
// minute had passed since the worker that held them died; asynq's
// recoverer (in a worker that starts now) then hands those tasks back.
// The long variant waits for the real minute instead.
func (s *stage) ageLeases(t *testing.T, queue string) int {
	t.Helper()
	ctx := context.Background()
	key := "asynq:{" + queue + "}:lease"
	ids, err := s.rdb.ZRange(ctx, key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	old := float64(time.Now().Add(-61 * time.Second).Unix())
	for _, id := range ids {
		if err := s.rdb.ZAddXX(ctx, key, redis.Z{Score: old, Member: id}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return len(ids)
}

// dueRetries makes every task in queue's retry set due now, as if its
// retry delay (15 to 45 s for a first retry) had passed.
func (s *stage) dueRetries(t *testing.T, queue string) int {
	t.Helper()
	ctx := context.Background()
	key := "asynq:{" + queue + "}:retry"
	ids, err := s.rdb.ZRange(ctx, key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	now := float64(time.Now().Unix())
	for _, id := range ids {
		if err := s.rdb.ZAddXX(ctx, key, redis.Z{Score: now, Member: id}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return len(ids)
}
