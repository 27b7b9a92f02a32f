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

// TestSentinelFailover runs two workers and the CLI through Sentinel (the
// same connection settings, REDIS_SENTINEL_ADDRS and
// REDIS_SENTINEL_MASTER), kills the master in the middle of a throttled
// run and lets Sentinel promote the replica. The workers follow the new
// master by themselves and nothing is lost. Replication is asynchronous,
// so what the master did in its last moments may be missing on the
// replica: a task may run again (counted as duplicated), and a tenant may
// get the tokens of those moments once more; the quota tenants here show
// how many.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	sn := redistest.NewSentinel(t)
	ctx := context.Background()
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: sn.Name, SentinelAddrs: []string{sn.Sentinel.Addr}})
	t.Cleanup(func() { _ = rdb.Close() })
	s := &stage{
		env:  []string{"REDIS_SENTINEL_ADDRS=" + sn.Sentinel.Addr, "REDIS_SENTINEL_MASTER=" + sn.Name},
		rdb:  rdb,
		insp: asynq.NewInspector(asynq.RedisFailoverClientOpt{MasterName: sn.Name, SentinelAddrs: []string{sn.Sentinel.Addr}}),
		lim:  throttle.New(rdb),
		up:   newUpstream(t),
	}
	t.Cleanup(func() { _ = s.insp.Close() })
	m := newMix(s, t, 24)
	s.enqueue(t, m.tasks)
	master := redis.NewClient(&redis.Options{Addr: sn.Master.Addr})
	defer master.Close()
	if n, err := master.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d, %v", n, err)
	}
	w := []*proc{startWorker(t, "A", s.env, "--concurrency", "8"), startWorker(t, "B", s.env, "--concurrency", "8")}
	flow := m.flowSeqs()
	eventually(t, time.Minute, "a third of the flowing tasks done", func() bool { return s.up.done(flow) >= len(flow)/3 })

	killed := time.Now()
	sn.Master.Kill()
	eventually(t, time.Minute, "Sentinel promotes the replica", func() bool {
		a, err := sn.MasterAddr(ctx)
		return err == nil && a == sn.Replica.Addr
	})
	promoted := time.Since(killed)
	for _, p := range w {
		eventually(t, time.Minute, "worker "+p.name+" on the new master", func() bool { return p.healthz() == 200 })
	}
	retried := s.drain(t, "default", flow, 3*time.Minute)
	extra := map[string]int{}
	for _, id := range m.quota {
		if got := s.up.doneFor(id); int64(got) != m.quotaN {
			extra[id] = got - int(m.quotaN)
		}
	}
	retried += m.release(t, s)
	f := s.up.figures(seqsOf(m.tasks))
	f.Duplicated += m.again
	report(t, f, fmt.Sprintf("replica promoted %s after the master was killed; %d retried by asynq; quota overshoot from the lost last moments: %v",
		promoted.Round(100*time.Millisecond), retried, extra))
	if f.Lost != 0 {
		t.Fatalf("after a Sentinel failover: %s", f)
	}
	for id, n := range extra {
		if n < 0 || n > 8 {
			t.Errorf("tenant %q: %d tasks beyond its quota after the failover; at most the few in flight at the kill may", id, n)
		}
	}
}
