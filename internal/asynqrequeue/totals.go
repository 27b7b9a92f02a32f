package asynqrequeue

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// totalsBatch is how many indexes one pipeline of WaitingByQueue counts.
const totalsBatch = 500

// WaitingByQueue counts, for each of the given queues, the tasks put back
// to wait, of every tenant, by what they wait for (as Waiting does for one
// tenant). It scans quotaq's indexes (SCAN, then one pipeline of counts per
// batch), so its cost grows with the number of tenants that have tasks
// waiting: call it every few seconds at most. Every queue given is in the
// result, with zeros when nothing of it waits.
func (r *Requeuer) WaitingByQueue(ctx context.Context, queues []string) (map[string]Waiting, error) {
	out := make(map[string]Waiting, len(queues))
	for _, q := range queues {
		out[q] = Waiting{}
	}
	type index struct {
		queue, key string
		kind       string // a key of legacyCause
	}
	var (
		mu      sync.Mutex
		indexes []index
	)
	scan := func(ctx context.Context, c redis.Cmdable) error {
		it := c.Scan(ctx, 0, "asynq:*:quotaq:*", 1000).Iterator()
		for it.Next(ctx) {
			k := it.Val()
			for _, q := range queues {
				rest, ok := strings.CutPrefix(k, queuePrefix(q)+"quotaq:")
				if !ok {
					continue
				}
				kind, _, _ := strings.Cut(rest, ":")
				if _, ok := legacyCause[kind]; !ok {
					break
				}
				mu.Lock()
				indexes = append(indexes, index{queue: q, key: k, kind: kind})
				mu.Unlock()
				break
			}
		}
		return it.Err()
	}
	var err error
	if c, ok := r.rdb.(*redis.ClusterClient); ok {
		err = c.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, r.rdb)
	}
	if err != nil {
		return out, fmt.Errorf("asynqrequeue: count waiting tasks: list indexes: %w", err)
	}
	if len(indexes) > 0 {
		if err := waitingScript.Load(ctx, r.rdb).Err(); err != nil {
			return out, fmt.Errorf("asynqrequeue: count waiting tasks: load the count script: %w", err)
		}
	}
	for start := 0; start < len(indexes); start += totalsBatch {
		batch := indexes[start:min(start+totalsBatch, len(indexes))]
		pipe := r.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(batch))
		for i, ix := range batch {
			cmds[i] = waitingScript.EvalSha(ctx, pipe, []string{ix.key}, countArgs(ix.queue, ix.kind)...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return out, fmt.Errorf("asynqrequeue: count waiting tasks: %w", err)
		}
		for i, ix := range batch {
			v, err := cmds[i].Int64Slice()
			if err != nil {
				return out, fmt.Errorf("asynqrequeue: count the tasks of %q: %w", ix.key, err)
			}
			w := out[ix.queue]
			if err := w.add(ix.kind, v); err != nil {
				return out, err
			}
			out[ix.queue] = w
		}
	}
	return out, nil
}
