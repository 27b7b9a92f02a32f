package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/bench/internal/harness"
	"github.com/quotaq/quotaq/throttle"
)

// idleTenants is how many tenants the memory and expiry parts create.
const idleTenants = 10_000

// scale measures item 5: memory per idle tenant, that idle tenants' keys
// expire, and decisions with many stored policies.
func scale(ctx context.Context, w io.Writer, rdb *redis.Client, cfg config) error {
	fmt.Fprintf(w, "### Memory per idle tenant (%d tenants, one decision each)\n\n", idleTenants)
	fmt.Fprintln(w, "| tenants' policy | keys per tenant | MEMORY USAGE bytes per tenant | used_memory bytes per tenant |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	slow := throttle.Policy{Rate: 0.01, Burst: 10} // one token takes 100 s back: the keys stay while we look
	for _, c := range []struct {
		name     string
		own      *throttle.Policy
		fallback throttle.Policy
	}{
		{"the default (none stored)", nil, slow},
		{"its own, with a daily quota", &throttle.Policy{Rate: 0.01, Burst: 10, Quota: 1000, QuotaPeriod: 24 * time.Hour}, slow},
	} {
		if err := rdb.FlushAll(ctx).Err(); err != nil {
			return err
		}
		l := throttle.New(rdb, throttle.WithPrefix("bq"), throttle.WithDefaultPolicy(c.fallback))
		ids := tenantIDs(idleTenants)
		m0, err := usedMemory(ctx, rdb)
		if err != nil {
			return err
		}
		if c.own != nil {
			if err := setPolicies(ctx, l, ids, *c.own); err != nil {
				return err
			}
		}
		if err := decideAll(ctx, l, ids); err != nil {
			return err
		}
		m1, err := usedMemory(ctx, rdb)
		if err != nil {
			return err
		}
		keys, bytes, detail, err := keyUsage(ctx, rdb)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "| %s | %.1f | %.0f (%s) | %.0f |\n", c.name, float64(keys)/idleTenants, float64(bytes)/idleTenants,
			detail, float64(m1-m0)/idleTenants)
	}
	fmt.Fprintln(w)

	if err := expiry(ctx, w, rdb); err != nil {
		return err
	}
	return manyPolicies(ctx, w, rdb, cfg)
}

// expiry shows that an idle tenant leaves nothing behind: its bucket key
// lives until the bucket is full, its quota key until its period ends.
func expiry(ctx context.Context, w io.Writer, rdb *redis.Client) error {
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return err
	}
	p := throttle.Policy{Rate: 10, Burst: 10, Quota: 100, QuotaPeriod: time.Second}
	l := throttle.New(rdb, throttle.WithPrefix("bq"), throttle.WithDefaultPolicy(p))
	ids := tenantIDs(idleTenants)
	start := time.Now()
	if err := decideAll(ctx, l, ids); err != nil {
		return err
	}
	n0, err := rdb.DBSize(ctx).Result()
	if err != nil {
		return err
	}
	ttlTB, _ := rdb.PTTL(ctx, "bq:{"+ids[len(ids)-1]+"}:tb").Result()
	ttlQ, _ := rdb.PTTL(ctx, "bq:{"+ids[len(ids)-1]+"}:quota").Result()
	fmt.Fprintf(w, "### Idle tenants expire\n\n")
	fmt.Fprintf(w, "Default policy %s, no policy stored; %d tenants decide once each (in %s). Keys then: %d (TTL of the last tenant's bucket key %s, quota key %s).\n\n",
		p, idleTenants, time.Since(start).Round(time.Millisecond), n0, ttlTB, ttlQ)
	fmt.Fprintln(w, "| seconds since the first decision | keys left |")
	fmt.Fprintln(w, "|---:|---:|")
	next := time.Duration(0)
	deadline := start.Add(30 * time.Second)
	for {
		n, err := rdb.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		if el := time.Since(start); el >= next || n == 0 {
			fmt.Fprintf(w, "| %.1f | %d |\n", el.Seconds(), n)
			next = el.Truncate(500*time.Millisecond) + 500*time.Millisecond
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(w, "| (gave up after 30 s) | %d |\n", n)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintln(w)
	return nil
}

// manyPolicies measures decisions with 1,000 and then cfg.policies stored
// policies.
func manyPolicies(ctx context.Context, w io.Writer, rdb *redis.Client, cfg config) error {
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return err
	}
	const callers = 16
	p := throttle.PerSecond(1_000_000)
	l := throttle.New(rdb, throttle.WithPrefix("bq"), throttle.WithDefaultPolicy(p))
	ids := tenantIDs(cfg.policies)
	hot := ids[:cfg.tenants]
	if err := setPolicies(ctx, l, hot, p); err != nil {
		return err
	}
	fmt.Fprintf(w, "### Decisions with many stored policies (quotaq, %d callers, %s a cell)\n\n", callers, cfg.d)
	fmt.Fprintln(w, "| stored policies | tenants decided over | decisions/s | p50 µs | p99 µs | script µs/call |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|")
	measure := func(stored int, over []string) error {
		fn := func(ctx context.Context, g, i int) (bool, error) {
			r, err := l.Allow(ctx, over[(g*7919+i*31)%len(over)])
			return r.Allowed, err
		}
		harness.Run(ctx, callers, cfg.warmup, fn)
		if err := harness.ResetStats(ctx, rdb); err != nil {
			return err
		}
		o := harness.Run(ctx, callers, cfg.d, fn)
		k, err := harness.ReadCounters(ctx, rdb)
		if err != nil {
			return err
		}
		calls, usec := k.Scripts()
		fmt.Fprintf(w, "| %d | %d | %.0f | %s | %s | %.1f |\n", stored, len(over), o.PerSecond(),
			harness.Micros(o.P50), harness.Micros(o.P99), float64(usec)/float64(max(calls, 1)))
		return nil
	}
	if err := measure(len(hot), hot); err != nil {
		return err
	}
	m0, err := usedMemory(ctx, rdb)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := setPolicies(ctx, l, ids[len(hot):], p); err != nil {
		return err
	}
	took := time.Since(start)
	m1, err := usedMemory(ctx, rdb)
	if err != nil {
		return err
	}
	if err := measure(len(ids), hot); err != nil {
		return err
	}
	if err := measure(len(ids), ids); err != nil {
		return err
	}
	pol, err := rdb.MemoryUsage(ctx, "bq:{"+ids[len(ids)-1]+"}:policy", 0).Result()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nStoring %d more policies took %s (SetPolicy from 32 callers); used_memory grew %.0f bytes per policy; MEMORY USAGE of one policy hash: %d bytes.\n\n",
		len(ids)-len(hot), took.Round(time.Millisecond), float64(m1-m0)/float64(len(ids)-len(hot)), pol)
	return nil
}

// decideAll makes one decision for every tenant, from 32 callers.
func decideAll(ctx context.Context, l *throttle.Limiter, ids []string) error {
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Go(func() {
			for i := g; i < len(ids); i += 32 {
				if _, err := l.Allow(ctx, ids[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no used_memory in INFO memory")
}

// keyUsage returns the number of keys, the sum of their MEMORY USAGE, and
// the bytes per kind of key ("tb 72 + policy 120").
func keyUsage(ctx context.Context, rdb *redis.Client) (keys, bytes int64, detail string, err error) {
	kinds := map[string]int64{}
	counts := map[string]int64{}
	var order []string
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		n, err := rdb.MemoryUsage(ctx, k, 0).Result()
		if err != nil {
			return 0, 0, "", err
		}
		kind := k[strings.LastIndex(k, ":")+1:]
		if _, ok := kinds[kind]; !ok {
			order = append(order, kind)
		}
		kinds[kind] += n
		counts[kind]++
		keys++
		bytes += n
	}
	if err := iter.Err(); err != nil {
		return 0, 0, "", err
	}
	var parts []string
	for _, kind := range order {
		parts = append(parts, fmt.Sprintf("%s %.0f", kind, float64(kinds[kind])/float64(counts[kind])))
	}
	return keys, bytes, strings.Join(parts, " + "), nil
}
