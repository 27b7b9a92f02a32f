package console

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/worker"
)

// The rate chart shows how many of a tenant's tasks started each second,
// in every worker: each Console counts the starts it sees (Middleware) and
// adds them, once a second, to one Redis hash per second (tenant -> tasks
// started), which expires after keepStarts.

// keepStarts is how long the per-second counts stay in Redis.
const keepStarts = 3 * time.Minute // the chart reads the last 2

// rates counts started tasks by second and tenant until the next flush.
type rates struct {
	rdb    redis.UniversalClient
	prefix string
	mu     sync.Mutex
	counts map[int64]map[string]int64 // unix second -> tenant -> tasks started
}

func newRates(rdb redis.UniversalClient, prefix string) *rates {
	return &rates{rdb: rdb, prefix: prefix, counts: map[int64]map[string]int64{}}
}

func (r *rates) key(sec int64) string {
	return r.prefix + ":console:started:" + strconv.FormatInt(sec, 10)
}

// started counts task as started now.
func (r *rates) started(task *asynq.Task) {
	tenant, ok := worker.TaskTenant(task)
	if !ok {
		return
	}
	sec := time.Now().Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.counts[sec]
	if m == nil {
		m = map[string]int64{}
		r.counts[sec] = m
	}
	m[tenant]++
}

// flush adds the counts so far to Redis in one pipeline.
func (r *rates) flush(ctx context.Context) error {
	r.mu.Lock()
	counts := r.counts
	r.counts = map[int64]map[string]int64{}
	r.mu.Unlock()
	if len(counts) == 0 {
		return nil
	}
	pipe := r.rdb.Pipeline()
	for sec, m := range counts {
		k := r.key(sec)
		for tenant, n := range m {
			pipe.HIncrBy(ctx, k, tenant, n)
		}
		pipe.Expire(ctx, k, keepStarts)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// flushEvery flushes every d until ctx is done.
func (r *rates) flushEvery(ctx context.Context, d time.Duration, log *slog.Logger) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.flush(ctx); err != nil && ctx.Err() == nil {
				log.Warn("console: could not record the tasks started, the rate chart misses them", "err", err)
			}
		}
	}
}

// series returns how many of tenant's tasks started in each of the n whole
// seconds that end with last.
func (r *rates) series(ctx context.Context, tenant string, last int64, n int) ([]int64, error) {
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, n)
	for i := range n {
		cmds[i] = pipe.HGet(ctx, r.key(last-int64(n-1-i)), tenant)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, err
	}
	out := make([]int64, n)
	for i, c := range cmds {
		out[i], _ = c.Int64()
	}
	return out, nil
}
