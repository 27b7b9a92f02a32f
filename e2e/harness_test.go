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
	rdb  redis.UniversalClient
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
	if p.Concurrency > 0 {
		args = append(args, "--concurrency", fmt.Sprint(p.Concurrency))
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

// drain waits until every seq completed at the upstream (see drain). In
// the short variant it also does at once what asynq otherwise does after a
// minute or two: it makes retries due now (a first retry waits 15-45 s),
// and it ages the lease of an orphan (a task asynq holds as active that no
// worker has reported working on for 12 s: its dequeue's answer or its
// completion was lost with Redis) and starts one more worker, whose
// recoverer hands the orphan back at once (a running worker's recoverer
// looks once a minute, for leases expired 30 s ago). It returns how many
// distinct tasks it did either for: retried by asynq, not lost.
func (s *stage) drain(t *testing.T, queue string, seqs []int, within time.Duration) int {
	t.Helper()
	aged := map[string]bool{}
	if *long {
		drain(t, s.up, s.insp, queue, seqs, within)
		return 0
	}
	start := time.Now()
	defer func() {
		t.Logf("drained %d tasks of queue %q after %s, %d retries or orphans hurried", len(seqs), queue, time.Since(start).Round(time.Millisecond), len(aged))
	}()
	orphanSince := map[string]time.Time{}
	recovery := false
	deadline := start.Add(within)
	for s.up.done(seqs) < len(seqs) && time.Now().Before(deadline) {
		for _, id := range s.dueRetries(t, queue) {
			aged[id] = true
		}
		if orphans := s.orphans(queue, orphanSince); len(orphans) > 0 {
			old := float64(time.Now().Add(-61 * time.Second).Unix())
			for _, id := range orphans {
				_ = s.rdb.ZAddXX(context.Background(), "asynq:{"+queue+"}:lease", redis.Z{Score: old, Member: id}).Err()
				aged[id] = true
			}
			if !recovery {
				recovery = true
				startWorker(t, "recovery", s.env, "--queues", queue+"=1")
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	drain(t, s.up, s.insp, queue, seqs, time.Second)
	return len(aged)
}

// orphans returns the active tasks of queue that no worker has reported
// working on for 12 s (asynq's heartbeat reports every 5 s), tracking when
// each was first seen so in since.
func (s *stage) orphans(queue string, since map[string]time.Time) []string {
	active, err := s.insp.ListActiveTasks(queue, asynq.PageSize(1000))
	if err != nil {
		return nil
	}
	servers, err := s.insp.Servers()
	if err != nil {
		return nil
	}
	working := map[string]bool{}
	for _, srv := range servers {
		for _, w := range srv.ActiveWorkers {
			working[w.TaskID] = true
		}
	}
	now := time.Now()
	var out []string
	seen := map[string]bool{}
	for _, ti := range active {
		seen[ti.ID] = true
		if working[ti.ID] {
			delete(since, ti.ID)
			continue
		}
		first, ok := since[ti.ID]
		if !ok {
			since[ti.ID] = now
			continue
		}
		if now.Sub(first) >= 12*time.Second {
			out = append(out, ti.ID)
			delete(since, ti.ID)
		}
	}
	for id := range since {
		if !seen[id] {
			delete(since, id)
		}
	}
	return out
}

// dueRetries makes every task in queue's retry set due now, as if its
// retry delay (15 to 45 s for a first retry) had passed, and returns their
// ids.
func (s *stage) dueRetries(t *testing.T, queue string) []string {
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
	return ids
}
