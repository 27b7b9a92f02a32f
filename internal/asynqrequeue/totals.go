package asynqrequeue

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

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
		kind       string // "booked", "parked" or "slotwait"
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
			cmds[i] = waitingScript.EvalSha(ctx, pipe, []string{ix.key}, taskKeyPrefix(ix.queue), maxCounted)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return out, fmt.Errorf("asynqrequeue: count waiting tasks: %w", err)
		}
		for i, ix := range batch {
			v, err := cmds[i].Int64Slice()
			if err != nil || len(v) != 2 {
				return out, fmt.Errorf("asynqrequeue: unexpected reply %v (%v) from the count script", v, err)
			}
			w := out[ix.queue]
			switch ix.kind {
			case "booked":
				w.ForTurn += int(v[0])
			case "parked":
				w.ForOther += int(v[0])
			case "slotwait":
				w.ForSlot += int(v[0])
			default:
				continue
			}
			if v[1] > 0 && (w.NextDue.IsZero() || time.UnixMilli(v[1]).Before(w.NextDue)) {
				w.NextDue = time.UnixMilli(v[1])
			}
			out[ix.queue] = w
		}
	}
	return out, nil
}
