package throttle_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// slow is a policy that refills so slowly (one token an hour) that nothing
// refills while a test runs: what a bucket admits is exactly its burst.
func slow(burst int64) throttle.Policy {
	return throttle.Policy{Rate: 1.0 / 3600, Burst: burst}
}

// TestCluster runs the limiter on a real 3-master Redis Cluster started from
// redis-server binaries: one tenant's keys stay in one slot, and it admits
// exactly what it admits on one node, also when a tenant and an upstream live
// in different slots (the CROSSSLOT fallback).
func TestCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.NewCluster(t, 3)

	t.Run("OneTenantsKeysShareOneSlot", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		rc := cl.Client(t)
		prefix := redistest.Prefix(t)
		l := throttle.New(rc, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 1, Burst: 5, Quota: 100, QuotaPeriod: time.Hour}))
		ids := []string{"acme", "globex", "{acme}", "a}b{c", "x:{y}:z", "%7B", "initech", "umbrella", "ünïcødé", "api:stripe"}
		for _, id := range ids {
			if err := l.SetPolicy(ctx, id, throttle.Policy{Rate: 1, Burst: 5, Quota: 100, QuotaPeriod: time.Hour}); err != nil {
				t.Fatal(err)
			}
			for _, n := range []int64{3, 3} { // bucket, quota, then a booking (aux)
				if res, err := l.ReserveN(ctx, id, n, 0); err != nil || !res.OK {
					t.Fatalf("ReserveN(%q, %d) = %+v, %v", id, n, res, err)
				}
			}
			if err := l.Hold(ctx, id, time.Minute); err != nil { // aux, holds
				t.Fatal(err)
			}
		}
		slotsOf := map[int64]bool{}
		nodesOf := map[string]bool{}
		perTag := map[string]map[int64]bool{}
		var mu sync.Mutex
		err := rc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			ks, err := c.Keys(ctx, prefix+":*").Result()
			if err != nil {
				return err
			}
			for _, k := range ks {
				slot, err := c.ClusterKeySlot(ctx, k).Result()
				if err != nil {
					return err
				}
				tag := k[strings.Index(k, "{")+1 : strings.Index(k, "}")]
				mu.Lock()
				if perTag[tag] == nil {
					perTag[tag] = map[int64]bool{}
				}
				perTag[tag][slot] = true
				slotsOf[slot] = true
				nodesOf[c.Options().Addr] = true
				mu.Unlock()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(perTag) != len(ids) {
			t.Fatalf("found keys of %d tenants, want %d: %v", len(perTag), len(ids), perTag)
		}
		for tag, slots := range perTag {
			if len(slots) != 1 {
				t.Errorf("tenant tag %q has keys in %d slots: %v", tag, len(slots), slots)
			}
		}
		if len(nodesOf) < 2 {
			t.Fatalf("%d tenants all landed on one master: the test does not exercise the cluster", len(ids))
		}
		got, err := l.Tenants(ctx)
		if err != nil || len(got) != len(ids) {
			t.Fatalf("Tenants() on the cluster = %q, %v; want all %d", got, err, len(ids))
		}
		if n, err := l.ResetAllQuotas(ctx); err != nil || n != len(ids) {
			t.Fatalf("ResetAllQuotas() on the cluster = %d, %v; want %d", n, err, len(ids))
		}
	})

	t.Run("ConcurrencyOfAnUpstreamInAnotherSlot", func(t *testing.T) {
		t.Parallel()
		rc := cl.Client(t)
		prefix := redistest.Prefix(t)
		up := throttle.Upstream("api")
		setup := throttle.New(rc, throttle.WithPrefix(prefix))
		if err := setup.SetPolicy(context.Background(), up, throttle.Policy{Rate: 100000, Burst: 1000, Concurrency: 2}); err != nil {
			t.Fatal(err)
		}
		// "acme" and the upstream hash to different slots: decided one at a
		// time, a refusal at the upstream gives back what acme took
		checkInFlight(t, 2, []string{"acme", up}, func() *throttle.Limiter {
			return throttle.New(rc, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 100000, Burst: 1000}))
		})
	})
	t.Run("ConcurrentCallersAdmitExactlyTheBurst", func(t *testing.T) {
		t.Parallel()
		for _, algo := range throttle.Algorithms() {
			t.Run(algo.String(), func(t *testing.T) {
				t.Parallel()
				const burst, clients, goroutines, calls = 50, 3, 8, 10 // 240 calls for 50 tokens, per tenant
				prefix := redistest.Prefix(t)
				tenants := []string{"hot", "warm", "{cold}", "x:y"}
				admitted := make([]atomic.Int64, len(tenants))
				var wg sync.WaitGroup
				for c := 0; c < clients; c++ {
					l := throttle.New(cl.Client(t), throttle.WithPrefix(prefix), throttle.WithAlgorithm(algo),
						throttle.WithDefaultPolicy(slow(burst)))
					for g := 0; g < goroutines; g++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for i := 0; i < calls; i++ {
								for ti, tenant := range tenants {
									r, err := l.Allow(context.Background(), tenant)
									if err != nil {
										t.Error(err)
										return
									}
									if r.Allowed {
										admitted[ti].Add(1)
									}
								}
							}
						}()
					}
				}
				wg.Wait()
				for ti, tenant := range tenants {
					if got := admitted[ti].Load(); got != burst {
						t.Errorf("tenant %q: admitted %d of %d calls, want exactly the burst %d", tenant, got, clients*goroutines*calls, burst)
					}
				}
			})
		}
	})

	t.Run("QuotaHoldsUnderConcurrency", func(t *testing.T) {
		t.Parallel()
		const quota = 37
		prefix := redistest.Prefix(t)
		l := throttle.New(cl.Client(t), throttle.WithPrefix(prefix),
			throttle.WithDefaultPolicy(throttle.Policy{Rate: 1000, Burst: 1000, Quota: quota, QuotaPeriod: 24 * time.Hour}))
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					r, err := l.Allow(context.Background(), "metered")
					if err != nil {
						t.Error(err)
						return
					}
					if r.Allowed {
						admitted.Add(1)
					} else if r.Reason != throttle.ReasonQuota {
						t.Errorf("refused for %v, want quota", r.Reason)
					}
				}
			}()
		}
		wg.Wait()
		if got := admitted.Load(); got != quota {
			t.Fatalf("admitted %d of 160, want exactly the quota %d", got, quota)
		}
	})

	// A tenant and an upstream in different slots cannot be decided by one
	// script: the limiter falls back to one id at a time (runSplit) and gives
	// back what it took when a later id refuses. Under concurrency it must
	// never admit more than either bucket holds, and every token it did not
	// use must be back: what each bucket lost is exactly what was admitted.
	t.Run("AllowMultiAcrossSlotsNeverOverAdmits", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		rc := cl.Client(t)
		prefix := redistest.Prefix(t)
		const upstream = "api:stripe"
		const upBurst, tenantBurst = 30, 10
		tenants := differentSlots(t, rc, prefix, upstream, 6)
		l := throttle.New(rc, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(slow(tenantBurst)))
		if err := l.SetPolicy(ctx, upstream, throttle.Policy{Rate: 1.0 / 360, Burst: 1000, Quota: upBurst}); err != nil {
			t.Fatal(err)
		}
		admitted := make([]atomic.Int64, len(tenants))
		var wg sync.WaitGroup
		for c := 0; c < 3; c++ {
			lc := throttle.New(cl.Client(t), throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(slow(tenantBurst)))
			for g := 0; g < 6; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 8; i++ {
						for ti, tenant := range tenants {
							ids := []string{tenant, upstream}
							if (g+i)%2 == 1 {
								ids = []string{upstream, tenant} // both orders
							}
							r, err := lc.AllowMulti(ctx, 1, ids...)
							if err != nil {
								t.Error(err)
								return
							}
							if r.Allowed {
								admitted[ti].Add(1)
							}
						}
					}
				}()
			}
		}
		wg.Wait()
		var total int64
		for ti, tenant := range tenants {
			got := admitted[ti].Load()
			total += got
			if got > tenantBurst {
				t.Errorf("tenant %q: admitted %d, its burst is %d", tenant, got, tenantBurst)
			}
			p, err := l.Peek(ctx, tenant)
			if err != nil {
				t.Fatal(err)
			}
			if used := tenantBurst - p.Remaining; used != got {
				t.Errorf("tenant %q: %d tokens gone from its bucket, %d admitted: the fallback leaked or double-spent", tenant, used, got)
			}
		}
		if total > upBurst {
			t.Errorf("admitted %d in all, the upstream's quota is %d", total, upBurst)
		}
		up, err := l.Peek(ctx, upstream)
		if err != nil {
			t.Fatal(err)
		}
		if used := upBurst - up.QuotaRemaining; used != total {
			t.Errorf("upstream: %d of its quota used, %d admitted", used, total)
		}
		if up.Remaining != 1000-total {
			t.Errorf("upstream bucket has %d tokens, want %d (1000 - %d admitted)", up.Remaining, 1000-total, total)
		}
		// 6 tenants x 10 > 30: demand exceeded the upstream, so once the
		// callers are gone a fresh call must see it used up, not leaked.
		if total != upBurst {
			t.Logf("admitted %d of the upstream's %d (the fallback may briefly admit less while it gives back)", total, upBurst)
		}
		t.Logf("cross-slot AllowMulti: %d tenants, admitted %d (upstream quota %d)", len(tenants), total, upBurst)
	})

	// The same all-or-nothing contract for a refused call across slots: the
	// id that admitted first is given its tokens back.
	t.Run("AllowMultiAcrossSlotsGivesBackOnRefusal", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		rc := cl.Client(t)
		prefix := redistest.Prefix(t)
		tenant := differentSlots(t, rc, prefix, "api:mail", 1)[0]
		l := throttle.New(rc, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(slow(10)))
		if err := l.SetPolicy(ctx, "api:mail", slow(2)); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			if r, err := l.AllowMulti(ctx, 1, tenant, "api:mail"); err != nil || !r.Allowed {
				t.Fatalf("call %d: %+v, %v", i, r, err)
			}
		}
		r, err := l.AllowMulti(ctx, 1, tenant, "api:mail")
		if err != nil || r.Allowed || r.Tenant != "api:mail" {
			t.Fatalf("upstream empty: %+v, %v; want refused by api:mail", r, err)
		}
		if p, _ := l.Peek(ctx, tenant); p.Remaining != 8 {
			t.Fatalf("tenant has %d tokens after 2 admitted and 1 refused call, want 8", p.Remaining)
		}
	})

	// A Reserve with a ticket refused across slots: the id that admitted at
	// once recorded no ticket, and still gets its tokens back.
	t.Run("ReserveWithTicketAcrossSlotsGivesBackOnRefusal", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		rc := cl.Client(t)
		prefix := redistest.Prefix(t)
		tenant := differentSlots(t, rc, prefix, "api:fax", 1)[0]
		l := throttle.New(rc, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(slow(10)))
		if err := l.SetPolicy(ctx, "api:fax", throttle.Policy{Rate: 1000, Burst: 1, Quota: 1}); err != nil {
			t.Fatal(err)
		}
		if r, err := l.Allow(ctx, "api:fax"); err != nil || !r.Allowed {
			t.Fatalf("using up the upstream's quota: %+v, %v", r, err)
		}
		res, err := l.Reserve(ctx, throttle.Request{IDs: []string{tenant, "api:fax"}, N: 1, Ticket: "job-1"})
		if err != nil || res.OK || res.Result.Reason != throttle.ReasonQuota {
			t.Fatalf("reserve through a used-up quota: %+v, %v; want refused for the quota", res, err)
		}
		if p, _ := l.Peek(ctx, tenant); p.Remaining != 10 {
			t.Fatalf("tenant has %d tokens after a refused reservation, want 10", p.Remaining)
		}
	})

	// ReserveMulti across slots with a ticket: a booking redeemed later must
	// not charge any id a second time.
	//
	// (runSplit records the ticket on the ids admitted at once too.)
	t.Run("ReserveMultiAcrossSlotsChargesOnce", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		rc := cl.Client(t)
		prefix := redistest.Prefix(t)
		tenant := differentSlots(t, rc, prefix, "api:sms", 1)[0]
		l := throttle.New(rc, throttle.WithPrefix(prefix))
		// the tenant has to wait (1 token, empty); the upstream has plenty
		if err := l.SetPolicy(ctx, tenant, throttle.Policy{Rate: 20, Burst: 1}); err != nil {
			t.Fatal(err)
		}
		if err := l.SetPolicy(ctx, "api:sms", slow(100)); err != nil {
			t.Fatal(err)
		}
		if r, err := l.Allow(ctx, tenant); err != nil || !r.Allowed {
			t.Fatalf("first: %+v %v", r, err)
		}
		req := throttle.Request{IDs: []string{tenant, "api:sms"}, N: 1, Ticket: "job-1"}
		res, err := l.Reserve(ctx, req)
		if err != nil || !res.OK || res.Delay <= 0 {
			t.Fatalf("reserve: %+v %v; want a booking due later", res, err)
		}
		// redeem once due (the tenant refills 1 token per 50ms)
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, err := l.Reserve(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if r.Result.Allowed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ticket never redeemed: %+v", r)
			}
			time.Sleep(10 * time.Millisecond)
		}
		up, err := l.Peek(ctx, "api:sms")
		if err != nil {
			t.Fatal(err)
		}
		if up.Remaining != 99 {
			t.Fatalf("upstream has %d tokens after one booked-and-redeemed job, want 99 (charged once)", up.Remaining)
		}
	})
}

// differentSlots returns n tenant ids whose keys live in another slot than
// upstream's under prefix.
func differentSlots(t *testing.T, rc *redis.ClusterClient, prefix, upstream string, n int) []string {
	t.Helper()
	ctx := context.Background()
	slot := func(id string) int64 {
		// the hash tag is the escaped id; these ids need no escaping
		s, err := rc.ClusterKeySlot(ctx, prefix+":{"+id+"}:policy").Result()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	up := slot(upstream)
	var ids []string
	for i := 0; len(ids) < n; i++ {
		id := fmt.Sprintf("tenant-%d", i)
		if slot(id) != up {
			ids = append(ids, id)
		}
	}
	return ids
}
