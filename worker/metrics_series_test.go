package worker_test

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

// uniq is a name of t's own.
func uniq(t testing.TB) string {
	return strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())
}

// series gathers g into name{label="value",...} -> value; a histogram
// gives its _count and _sum.
func series(t testing.TB, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[strings.Replace(key, "{", "_count{", 1)] = float64(m.GetHistogram().GetSampleCount())
				out[strings.Replace(key, "{", "_sum{", 1)] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// Every series a dashboard or an alert reads is there before the first
// task, at zero: the task types given to KnownTypes with every reason,
// the queues given to the state collector with every cause, the watched
// tenants and tiers, and the Redis error kinds.
func TestMetricsSeriesExistFromStart(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	l := throttle.New(rdb, throttle.WithPrefix(prefix))
	reg := prometheus.NewRegistry()
	m, err := worker.NewMetrics(reg, false, worker.KnownTypes("job"))
	if err != nil {
		t.Fatal(err)
	}
	th := worker.New(l, rdb, worker.WithMetrics(m))
	t.Cleanup(func() { _ = th.Close() })
	reg.MustRegister(th.StateCollector([]string{"q-" + prefix},
		worker.WatchTenants(map[string]string{"acme": "", "globex": "gold", "initech": "gold"})))
	got := series(t, reg)
	q := fmt.Sprintf("%q", "q-"+prefix)
	for _, want := range []string{
		`quotaq_worker_allowed_total{type="job",via="now"}`,
		`quotaq_worker_allowed_total{type="job",via="fail_open"}`,
		`quotaq_worker_throttled_total{reason="paused",type="job"}`,
		`quotaq_worker_throttled_total{reason="unavailable",type="job"}`,
		`quotaq_worker_requeued_total{type="job"}`,
		`quotaq_worker_rethrottled_total{type="job"}`,
		`quotaq_worker_waited_in_process_total{type="job"}`,
		`quotaq_worker_upstream_retry_after_total{type="job"}`,
		`quotaq_worker_archived_total{reason="max_wait",type="job"}`,
		`quotaq_worker_errors_total{op="requeue",type="job"}`,
		`quotaq_worker_slots_held{type="job"}`,
		`quotaq_worker_decision_seconds_count{type="job"}`,
		`quotaq_worker_throttle_delay_seconds_count{type="job"}`,
		`quotaq_worker_throttle_wait_seconds_count{type="job"}`,
		`quotaq_worker_shadow_mode{}`,
		`quotaq_worker_shadow_throttled_total{reason="rate",type="job"}`,
		`quotaq_worker_shadow_throttled_total{reason="upstream",type="job"}`,
		`quotaq_worker_shadow_archived_total{reason="cost_above_burst",type="job"}`,
		`quotaq_worker_shadow_holds_skipped_total{type="job"}`,
		`quotaq_redis_errors_total{kind="connection"}`,
		`quotaq_redis_errors_total{kind="server"}`,
		`quotaq_waiting_tasks{cause="rate",queue=` + q + `}`,
		`quotaq_waiting_tasks{cause="upstream",queue=` + q + `}`,
		`quotaq_waiting_tasks{cause="quota",queue=` + q + `}`,
		`quotaq_waiting_tasks{cause="hold",queue=` + q + `}`,
		`quotaq_waiting_tasks{cause="outage",queue=` + q + `}`,
		`quotaq_waiting_tasks{cause="invalid",queue=` + q + `}`,
		`quotaq_waiting_tasks{cause="concurrency",queue=` + q + `}`,
		`quotaq_tenants_held{kind="tenant"}`,
		`quotaq_tenants_held{kind="upstream"}`,
		`quotaq_hold_longest_seconds{kind="tenant"}`,
		`quotaq_tenant_quota_remaining{tenant="acme"}`,
		`quotaq_tier_quota_remaining{tier="gold"}`,
		`quotaq_limiter_local_decisions_total{answer="lease"}`,
		`quotaq_limiter_local_decisions_total{answer="redis"}`,
		`quotaq_state_refresh_errors_total{}`,
	} {
		v, ok := got[want]
		switch {
		case !ok:
			t.Errorf("%s: missing", want)
		case v != 0 && !strings.HasPrefix(want, "quotaq_tenant_quota_remaining") && !strings.HasPrefix(want, "quotaq_tier_quota_remaining"):
			t.Errorf("%s = %v, want 0", want, v)
		case strings.Contains(want, "quota_remaining") && v != -1:
			t.Errorf("%s = %v, want -1 (no quota)", want, v)
		}
	}
	if _, ok := got[`quotaq_tenant_quota_remaining{tenant="globex"}`]; ok {
		t.Errorf("a tenant watched in a tier has a series of its own")
	}
}

// The state metrics follow Redis: tasks put back for their turn, a quota
// used up and a hold show in quotaq_waiting_tasks, quotaq_tenants_held and
// the watched quotas, and the limiter's local answers are counted.
func TestStateMetricsFollowRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// tenant names of this test's own: put-back tasks are indexed by
	// queue and tenant, outside the limiter's prefix
	slow, capped := "slow-"+uniq(t), "capped-"+uniq(t)
	b := setup(t, bundleConfig{policies: map[string]throttle.Policy{
		slow:   {Rate: 0.1, Burst: 1},
		capped: {Rate: 100, Burst: 100, Quota: 2, QuotaPeriod: time.Hour},
	}})
	b.reg.MustRegister(b.throttler.StateCollector([]string{b.queue}, worker.StateInterval(0),
		worker.WatchTenants(map[string]string{capped: "", slow: "free"})))
	q := fmt.Sprintf("%q", b.queue)
	rate, quota := `quotaq_waiting_tasks{cause="rate",queue=`+q+`}`, `quotaq_waiting_tasks{cause="quota",queue=`+q+`}`
	b.enqueue(t, slow, 4)
	b.enqueue(t, capped, 5)
	var got map[string]float64
	waitFor(t, 20*time.Second, "3 tasks waiting for their turn, 3 for the quota", func() bool {
		got = series(t, b.reg)
		return got[rate] == 3 && got[quota] == 3
	})
	if v := got[`quotaq_tenant_quota_remaining{tenant="`+capped+`"}`]; v != 0 {
		t.Errorf("capped's quota remaining %v, want 0", v)
	}
	if v := got[`quotaq_tier_quota_remaining{tier="free"}`]; v != -1 {
		t.Errorf("tier free (no quota) %v, want -1", v)
	}
	if got[`quotaq_tenants_held{kind="tenant"}`] != 0 {
		t.Errorf("held before any hold: %v", got[`quotaq_tenants_held{kind="tenant"}`])
	}
	if err := b.limiter.Hold(ctx, slow, time.Hour); err != nil {
		t.Fatal(err)
	}
	got = series(t, b.reg)
	if v, l := got[`quotaq_tenants_held{kind="tenant"}`], got[`quotaq_hold_longest_seconds{kind="tenant"}`]; v != 1 || l < 3500 || l > 3600 {
		t.Errorf("after a hold of 1h: %v held, longest %vs left; want 1, about 3600", v, l)
	}
	if got[`quotaq_limiter_local_decisions_total{answer="redis"}`] != 0 {
		t.Errorf("local decisions counted without leases: %v", got)
	}
}

// The throttle wait histogram observes, for each task that carries its
// ready time, how long it waited before its first run.
func TestThrottleWaitIsObserved(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleConfig{})
	tenant := "ready-" + uniq(t)
	ready := worker.StampReady(map[string]string{worker.TenantHeader: tenant}, asynq.ProcessAt(time.Now().Add(-time.Minute)))
	if _, err := b.client.Enqueue(asynq.NewTaskWithHeaders("job", nil, ready), asynq.Queue(b.queue)); err != nil {
		t.Fatal(err)
	}
	b.enqueue(t, tenant, 1) // no ready time: not observed
	b.waitQueueDone(t, 10*time.Second)
	got := series(t, b.reg)
	if n, sum := got[`quotaq_worker_throttle_wait_seconds_count{type="job"}`], got[`quotaq_worker_throttle_wait_seconds_sum{type="job"}`]; n != 1 || sum < 60 || sum > 70 {
		t.Errorf("throttle wait: %v observations, %vs in all; want 1 of about 60s", n, sum)
	}
}

// RedisHook counts calls that found no usable Redis, and not replies that
// answer what was asked (a missing key, a script's error).
func TestRedisHookCountsUnusableServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	m, err := worker.NewMetrics(reg, false)
	if err != nil {
		t.Fatal(err)
	}
	up, _ := redistest.Client(t)
	up.AddHook(m.RedisHook())
	_ = up.Get(ctx, "missing-key").Err()
	_ = up.Eval(ctx, `return redis.error_reply("NOT FOUND")`, nil).Err()
	_ = up.Do(ctx, "NOSUCHCOMMAND").Err()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	down := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { down.Close() })
	down.AddHook(m.RedisHook())
	for range 2 {
		if down.Ping(ctx).Err() == nil {
			t.Fatal("ping of a closed port answered")
		}
	}
	// a replica (of a master that is not there) refuses writes: READONLY
	replica := redistest.NewServer(t, "replicaof 127.0.0.1 1")
	ro := redis.NewClient(&redis.Options{Addr: replica.Addr, MaxRetries: -1})
	t.Cleanup(func() { ro.Close() })
	ro.AddHook(m.RedisHook())
	if err := ro.Set(ctx, "k", "v", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "READONLY") {
		t.Fatalf("write on a replica: %v, want READONLY", err)
	}
	got := series(t, reg)
	if c, s := got[`quotaq_redis_errors_total{kind="connection"}`], got[`quotaq_redis_errors_total{kind="server"}`]; c != 2 || s != 1 {
		t.Errorf("errors: %v connection, %v server; want 2 connection (the closed port), 1 server (READONLY)", c, s)
	}
}
