package asynqrequeue

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed release.lua
	releaseLua    string
	releaseScript = redis.NewScript(moveLua + releaseLua)
	//go:embed waiting.lua
	waitingLua    string
	waitingScript = redis.NewScript(waitingLua)
)

// releaseBatch is the most parked tasks one script run looks at.
const releaseBatch = 500

// Release brings back now the parked tasks of the given tenants (every
// tenant's when none is given), in every queue: the tasks Requeue put back
// with Request.Parked, to wait for nothing booked (a quota used up, a
// pause, an outage). Call it when what they wait for ended early (a quota
// reset, a higher policy): they go to the tail of their pending list and
// are decided again when dequeued, so the limiter spreads them. It returns
// how many it moved; a task no longer parked as Requeue left it is skipped.
func (r *Requeuer) Release(ctx context.Context, tenants ...string) (int, error) {
	queues, err := r.rdb.SMembers(ctx, allQueuesKey).Result()
	if err != nil {
		return 0, fmt.Errorf("asynqrequeue: release: list queues: %w", err)
	}
	moved := 0
	for _, q := range queues {
		keys := make([]string, 0, len(tenants))
		for _, t := range tenants {
			keys = append(keys, parkedKey(q, t))
		}
		if len(tenants) == 0 {
			if keys, err = r.parkedKeys(ctx, q); err != nil {
				return moved, err
			}
		}
		for _, k := range keys {
			n, err := r.release(ctx, q, k)
			moved += n
			if err != nil {
				return moved, err
			}
		}
	}
	return moved, nil
}

// release empties one parked zset of queue.
func (r *Requeuer) release(ctx context.Context, queue, key string) (int, error) {
	moved := 0
	for {
		v, err := releaseScript.Run(ctx, r.rdb, []string{key, scheduledKey(queue), pendingKey(queue)},
			taskKeyPrefix(queue), time.Now().UnixNano(), releaseBatch).Int64Slice()
		if err != nil {
			return moved, fmt.Errorf("asynqrequeue: release parked tasks of queue %q: %w", queue, err)
		}
		if len(v) != 2 {
			return moved, fmt.Errorf("asynqrequeue: unexpected reply %v from release script", v)
		}
		moved += int(v[0])
		if v[1] == 0 {
			return moved, nil
		}
	}
}

// parkedKeys lists queue's parked zsets, of every tenant (SCAN; on a
// Cluster, a queue's keys live on one node).
func (r *Requeuer) parkedKeys(ctx context.Context, queue string) ([]string, error) {
	prefix := parkedKey(queue, "")
	pattern := strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`).Replace(prefix) + "*"
	var (
		mu   sync.Mutex
		keys []string
	)
	scan := func(ctx context.Context, c redis.Cmdable) error {
		it := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			keys = append(keys, it.Val())
			mu.Unlock()
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
		return nil, fmt.Errorf("asynqrequeue: release: list parked tasks of queue %q: %w", queue, err)
	}
	return keys, nil
}

// WakeOne brings back now the task that has waited longest for one of id's
// concurrency slots (Request.WaitsForSlotOf), when a slot has freed: of
// queue first, else of the other queues. It reports whether there was one.
// Entries of tasks no longer waiting as Requeue left them are dropped on
// the way.
func (r *Requeuer) WakeOne(ctx context.Context, queue, id string) (bool, error) {
	if ok, err := r.wakeOne(ctx, queue, id); ok || err != nil {
		return ok, err
	}
	queues, err := r.rdb.SMembers(ctx, allQueuesKey).Result()
	if err != nil {
		return false, fmt.Errorf("asynqrequeue: wake a task waiting for a slot of %q: list queues: %w", id, err)
	}
	for _, q := range queues {
		if q == queue {
			continue
		}
		if ok, err := r.wakeOne(ctx, q, id); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// wakeOne is WakeOne in one queue.
func (r *Requeuer) wakeOne(ctx context.Context, queue, id string) (bool, error) {
	key := slotWaitKey(queue, id)
	for {
		v, err := releaseScript.Run(ctx, r.rdb, []string{key, scheduledKey(queue), pendingKey(queue)},
			taskKeyPrefix(queue), time.Now().UnixNano(), 1).Int64Slice()
		if err != nil {
			return false, fmt.Errorf("asynqrequeue: wake a task of queue %q waiting for a slot of %q: %w", queue, id, err)
		}
		if len(v) != 2 {
			return false, fmt.Errorf("asynqrequeue: unexpected reply %v from release script", v)
		}
		if v[0] > 0 || v[1] == 0 {
			return v[0] > 0, nil
		}
	}
}

// maxCounted is the most entries Waiting looks at per index and queue.
const maxCounted = 10000

// Waiting is what a tenant's tasks put back by the worker wait for.
type Waiting struct {
	ForTurn  int // a booked slot (Retime moves them)
	ForOther int // nothing booked: a quota used up, a pause, an outage (Release brings them back)
	ForSlot  int // a concurrency slot (WakeOne)
	// ByCause counts the same tasks by why they were put back
	// (Request.Cause)
	ByCause ByCause
	NextDue time.Time // the earliest due time among them; zero: none
}

// legacyCause is, for each kind of index (the word after "quotaq:" in its
// key), the cause its tasks count under when none is recorded: tasks put
// back by a worker that did not record one are counted as they were then.
var legacyCause = map[string]Cause{"booked": CauseRate, "parked": CauseQuota, "slotwait": CauseConcurrency}

// countArgs are the count script's arguments for an index of kind of queue.
func countArgs(queue, kind string) []any {
	args := []any{taskKeyPrefix(queue), maxCounted, string(legacyCause[kind])}
	for _, c := range Causes {
		args = append(args, string(c))
	}
	return args
}

// add adds v, the count script's reply on an index of kind, to w.
func (w *Waiting) add(kind string, v []int64) error {
	if len(v) != 2+len(Causes) {
		return fmt.Errorf("asynqrequeue: unexpected reply %v from the count script", v)
	}
	switch kind {
	case "booked":
		w.ForTurn += int(v[0])
	case "parked":
		w.ForOther += int(v[0])
	case "slotwait":
		w.ForSlot += int(v[0])
	}
	for i, c := range Causes {
		*w.ByCause.field(c) += int(v[2+i])
	}
	if first := time.UnixMilli(v[1]); v[1] > 0 && (w.NextDue.IsZero() || first.Before(w.NextDue)) {
		w.NextDue = first
	}
	return nil
}

// Waiting counts, in every queue, the tasks of tenant put back to wait
// (up to 10,000 per index and queue are looked at): an entry counts only
// while its task is still scheduled as Requeue left it.
func (r *Requeuer) Waiting(ctx context.Context, tenant string) (Waiting, error) {
	var w Waiting
	queues, err := r.rdb.SMembers(ctx, allQueuesKey).Result()
	if err != nil {
		return w, fmt.Errorf("asynqrequeue: count waiting tasks: list queues: %w", err)
	}
	for _, q := range queues {
		for _, ix := range []struct{ kind, key string }{
			{"booked", bookedKey(q, tenant)}, {"parked", parkedKey(q, tenant)}, {"slotwait", slotWaitKey(q, tenant)},
		} {
			v, err := waitingScript.Run(ctx, r.rdb, []string{ix.key}, countArgs(q, ix.kind)...).Int64Slice()
			if err != nil {
				return w, fmt.Errorf("asynqrequeue: count the tasks of %q: %w", ix.key, err)
			}
			if err := w.add(ix.kind, v); err != nil {
				return w, err
			}
		}
	}
	return w, nil
}
