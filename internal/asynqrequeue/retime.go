package asynqrequeue

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed retime.lua
	retimeLua    string
	retimeScript = redis.NewScript(retimeLua)
)

// Retime moves tenant's tasks that wait for a booked slot (put back by
// Requeue without Parked), in every queue, to the due times dueOf gives
// for them (the zero time: leave it), and returns, per queue, the tasks it
// moved with their new due times, for a Waker. Call it when the limiter
// moved the slots (a pause, a slower rate learned from the upstream): the
// tasks then come back at their new slot instead of early.
func (r *Requeuer) Retime(ctx context.Context, tenant string, dueOf func(queue string, ids []string) ([]time.Time, error)) (map[string][]Due, error) {
	queues, err := r.rdb.SMembers(ctx, allQueuesKey).Result()
	if err != nil {
		return nil, fmt.Errorf("asynqrequeue: retime: list queues: %w", err)
	}
	out := map[string][]Due{}
	for _, q := range queues {
		ids, err := r.rdb.ZRange(ctx, bookedKey(q, tenant), 0, -1).Result()
		if err != nil {
			return out, fmt.Errorf("asynqrequeue: retime tasks of queue %q: %w", q, err)
		}
		if len(ids) == 0 {
			continue
		}
		dues, err := dueOf(q, ids)
		if err != nil {
			return out, err
		}
		args := []any{taskKeyPrefix(q)}
		due := map[string]int64{}
		for i, id := range ids {
			if i < len(dues) && !dues[i].IsZero() {
				ms := (dues[i].UnixNano() + 999_999) / 1_000_000
				due[id] = ms
				args = append(args, id, strconv.FormatInt(ms, 10))
			}
		}
		moved, err := retimeScript.Run(ctx, r.rdb, []string{bookedKey(q, tenant), scheduledKey(q)}, args...).StringSlice()
		if err != nil {
			return out, fmt.Errorf("asynqrequeue: retime tasks of queue %q: %w", q, err)
		}
		for _, id := range moved {
			out[q] = append(out[q], Due{ID: id, DueMillis: due[id]})
		}
	}
	return out, nil
}
