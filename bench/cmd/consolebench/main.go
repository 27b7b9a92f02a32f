// Command consolebench measures the web page's tenants table (package
// console) with many tenants on a real redis-server: how long the first
// snapshot of every tenant takes, and how long a page of the table takes to
// answer, sorted, filtered and paged, while snapshots are retaken.
//
//	go run ./cmd/consolebench --tenants 100000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/bench/internal/harness"
	"github.com/quotaq/quotaq/console"
	"github.com/quotaq/quotaq/throttle"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "consolebench:", err)
		os.Exit(1)
	}
}

// queries are the table requests measured.
var queries = []struct{ name, query string }{
	{"first page, by tenant", "sort=tenant&per_page=50"},
	{"page 1000, by rate descending", "sort=rate&desc=1&page=1000&per_page=50"},
	{"filter on part of the id", "filter=0042&per_page=50"},
	{"held tenants, by hold left", "state=held&sort=hold&desc=1&per_page=50"},
	{"most tasks waiting", "sort=waiting&desc=1&per_page=500"},
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("consolebench", flag.ContinueOnError)
	tenants := fs.Int("tenants", 100000, "tenants with a policy of their own")
	withTasks := fs.Int("with-tasks", 1000, "of them, how many have 5 tasks in the queue")
	held := fs.Int("held", 100, "of them, how many are held")
	requests := fs.Int("requests", 200, "requests per query")
	addr := fs.String("redis", "", "address of a redis-server to use (default: start one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	srv, err := harness.StartServer(*addr)
	if err != nil {
		return err
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 32})
	defer rdb.Close()
	prefix := fmt.Sprintf("consolebench%d", time.Now().UnixNano())
	lim := throttle.New(rdb, throttle.WithPrefix(prefix))

	start := time.Now()
	if err := fill(ctx, rdb, lim, *tenants, *withTasks, *held, "q-"+prefix); err != nil {
		return err
	}
	fill := time.Since(start)

	c := console.New(lim, rdb, console.WithQueues("q-"+prefix))
	defer c.Close()
	hs := httptest.NewServer(http.StripPrefix("/ui", c))
	defer hs.Close()

	get := func(q string) (time.Duration, int, error) {
		t0 := time.Now()
		res, err := http.Get(hs.URL + "/ui/api/tenants?" + q)
		if err != nil {
			return 0, 0, err
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		d := time.Since(t0)
		if err != nil || res.StatusCode != 200 {
			return d, 0, fmt.Errorf("GET %s: %d %s %v", q, res.StatusCode, body, err)
		}
		var p struct {
			Total  int     `json:"total"`
			TookMs float64 `json:"snapshot_took_ms"`
		}
		_ = json.Unmarshal(body, &p)
		if p.Total != *tenants {
			return d, 0, fmt.Errorf("GET %s: %d tenants, want %d", q, p.Total, *tenants)
		}
		return d, len(body), nil
	}
	first, _, err := get(queries[0].query)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "redis-server %s; %d tenants with a policy, %d with 5 tasks each, %d held; filled in %s\n\n",
		harness.Version(ctx, rdb), *tenants, *withTasks, *held, fill.Round(time.Millisecond))
	fmt.Fprintf(out, "first request (waits for the first snapshot of every tenant): %s\n\n", first.Round(time.Millisecond))
	fmt.Fprintf(out, "| query | requests | p50 | p99 | max | bytes |\n|---|---|---|---|---|---|\n")
	for _, q := range queries {
		var ds []time.Duration
		size := 0
		for range *requests {
			d, n, err := get(q.query)
			if err != nil {
				return err
			}
			ds = append(ds, d)
			size = n
		}
		slices.Sort(ds)
		fmt.Fprintf(out, "| %s | %d | %s | %s | %s | %d |\n", q.name, len(ds),
			harness.Micros(ds[len(ds)/2]), harness.Micros(ds[len(ds)*99/100]), harness.Micros(ds[len(ds)-1]), size)
	}
	fmt.Fprintf(out, "\nmachine load: %s\n", harness.Load())
	return nil
}

// fill stores n tenants' policies (16 at a time), enqueues 5 tasks for
// withTasks of them and holds held of them.
func fill(ctx context.Context, rdb *redis.Client, lim *throttle.Limiter, n, withTasks, held int, queue string) error {
	ids := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				p := throttle.Policy{Rate: float64(1 + i%50), Burst: int64(1 + i%10)}
				if i%3 == 0 {
					p.Quota, p.QuotaPeriod = 1000, 24*time.Hour
				}
				if err := lim.SetPolicy(ctx, tenant(i), p); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range n {
		ids <- i
	}
	close(ids)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	client := asynq.NewClientFromRedisClient(rdb)
	defer client.Close()
	for i := range min(withTasks, n) {
		for range 5 {
			task := asynq.NewTaskWithHeaders("bench", nil, map[string]string{"tenant": tenant(i * (n / max(withTasks, 1)))}, asynq.Queue(queue))
			if _, err := client.EnqueueContext(ctx, task); err != nil {
				return err
			}
		}
	}
	for i := range min(held, n) {
		if err := lim.Hold(ctx, tenant(n-1-i), time.Hour); err != nil {
			return err
		}
	}
	return nil
}

func tenant(i int) string { return fmt.Sprintf("tenant-%06d", i) }
