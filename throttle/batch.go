package throttle

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// WithBatching lets concurrent decisions share round trips: decisions of
// any tenants made at the same time by this Limiter are sent together in one
// pipeline. On one Redis node (not a Cluster), the common decisions (one
// tenant, TokenBucket, Allow, AllowN or Reserve) of a pipeline are decided in
// one script run, and every other decision is its own EVALSHA. Each decision
// is still decided atomically, exactly as without batching; only the trips
// to Redis and the script runs are shared. Default off: each decision is its
// own round trip.
//
// A decision made while nothing else is in flight goes at once, on its own,
// as without batching. Otherwise a pipeline is sent as soon as one of the
// Limiter's pipeline slots is free (it keeps at most 4 in flight), holding
// what has queued meanwhile, up to size decisions; linger > 0 makes it wait
// up to linger for the batch to fill first, which can make batches larger at
// the cost of that much latency when the load is light. size <= 0 means 64;
// linger 0 is recommended: under load, batches form by themselves while
// earlier pipelines are in flight, and a lone caller is not held back.
//
// A caller whose context ends while its decision waits for a pipeline
// returns the context's error; a decision already sent may still have been
// applied in Redis, as with any cancelled call.
func WithBatching(size int, linger time.Duration) Option {
	return func(l *Limiter) {
		if size <= 0 {
			size = defaultBatchSize
		}
		l.batch = &batcher{size: size, linger: max(0, linger), slots: batchPipelines}
	}
}

const (
	defaultBatchSize = 64
	// batchPipelines is how many pipelines a Limiter keeps in flight.
	batchPipelines = 4
)

// batcher queues decisions and sends them in pipelines.
type batcher struct {
	size   int
	linger time.Duration
	slots  int

	mu       sync.Mutex
	queue    []*batchCall
	inflight int           // pipelines being sent or being filled
	full     chan struct{} // closed when the queue reaches size, while a flusher lingers
}

// batchCall is one decision waiting for its reply.
type batchCall struct {
	ctx  context.Context
	keys []string
	args []any
	// lean: a lean.lua decision, whose arguments are shared (the default
	// policy, ARGV[1..5]) then own (args)
	lean   bool
	shared []any
	reply  []int64
	err    error
	done   chan struct{}
}

// decide runs the decision script with keys and args: in its own round trip,
// or with batching in a shared one.
func (l *Limiter) decide(ctx context.Context, keys []string, args []any) ([]int64, error) {
	if l.batch == nil {
		return l.algo.decide.Run(ctx, l.rdb, keys, args...).Int64Slice()
	}
	return l.batch.do(ctx, l, &batchCall{ctx: ctx, keys: keys, args: args})
}

// decideLean runs lean.lua for one decision: in its own round trip, or with
// batching in one script run with the other lean decisions of the batch.
func (l *Limiter) decideLean(ctx context.Context, keys []string, shared, own []any) ([]int64, error) {
	c := &batchCall{ctx: ctx, keys: keys, args: own, lean: true, shared: shared}
	if l.batch == nil {
		return l.decideNow(ctx, c)
	}
	return l.batch.do(ctx, l, c)
}

func (b *batcher) do(ctx context.Context, l *Limiter, c *batchCall) ([]int64, error) {
	b.mu.Lock()
	if b.inflight == 0 && len(b.queue) == 0 && b.linger == 0 {
		// nothing to share a trip with: go at once, from this goroutine
		b.inflight++
		b.mu.Unlock()
		reply, err := l.decideNow(ctx, c)
		b.mu.Lock()
		b.inflight--
		flush := len(b.queue) > 0 && b.inflight < b.slots && b.full == nil
		if flush {
			b.inflight++
		}
		b.mu.Unlock()
		if flush {
			go b.flush(l)
		}
		return reply, err
	}
	c.done = make(chan struct{})
	b.queue = append(b.queue, c)
	if b.full != nil && len(b.queue) >= b.size {
		close(b.full)
		b.full = nil
	}
	// while a batch lingers to fill, it is the one that leaves next
	flush := b.inflight < b.slots && b.full == nil
	if flush {
		b.inflight++
	}
	b.mu.Unlock()
	if flush {
		// a goroutine sends, so that this caller can leave when its
		// context ends even if Redis is slow to answer the pipeline
		go b.flush(l)
	}
	select {
	case <-c.done:
		return c.reply, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// decideNow runs one decision on its own, as without batching.
func (l *Limiter) decideNow(ctx context.Context, c *batchCall) ([]int64, error) {
	if !c.lean {
		return l.algo.decide.Run(ctx, l.rdb, c.keys, c.args...).Int64Slice()
	}
	// alone in its run: the trailing arguments that say "none" can go
	own := c.args
	for len(own) > 2 && isNone(own[len(own)-1]) {
		own = own[:len(own)-1]
	}
	v, err := leanScript.Run(ctx, l.rdb, c.keys, append(c.shared, own...)...).Result()
	if err != nil {
		return nil, err
	}
	reply, err := leanReply(v)
	if err != nil {
		return nil, err
	}
	ds, err := leanReplies(reply, 1)
	if err != nil {
		return nil, err
	}
	return ds[0], nil
}

// isNone reports whether a lean.lua argument says "none" (0 or ""), which it
// also reads from an argument left out.
func isNone(a any) bool {
	switch a := a.(type) {
	case int64:
		return a == 0
	case int:
		return a == 0
	case string:
		return a == ""
	}
	return false
}

// leanReply reads lean.lua's reply to one decision: a list of integers, or
// one integer packing code + 128*remaining + 2^27*reset_us for a decision
// with no wait, quota or lease, or -(2 + code + 128*wait_us + 2^30*reset_us)
// for one with nothing remaining, no quota or lease (see lean.lua).
func leanReply(v any) ([]int64, error) {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			u := -v - 2
			return []int64{u & 127, 0, u >> 7 & (1<<23 - 1), u >> 30}, nil
		}
		return []int64{v & 127, v >> 7 & (1<<20 - 1), 0, v >> 27}, nil
	case []any:
		out := make([]int64, len(v))
		for i, x := range v {
			n, ok := x.(int64)
			if !ok {
				return nil, fmt.Errorf("throttle: unexpected lean script reply %v", v)
			}
			out[i] = n
		}
		return out, nil
	}
	return nil, fmt.Errorf("throttle: unexpected lean script reply %v", v)
}

// leanReplies turns lean.lua's reply for k decisions into k replies in
// decide.lua's form (nine integers; the first is -1 for a state lean.lua
// does not know), then the tokens leased and when Redis granted them.
func leanReplies(v []int64, k int) ([][]int64, error) {
	out := make([][]int64, 0, k)
	for len(v) >= 4 && len(out) < k {
		code, d := v[0], make([]int64, 11)
		d[0], d[1], d[2], d[3], d[4], d[6] = -1, v[1], v[2], v[3], -1, 1
		v = v[4:]
		if code >= 0 {
			d[0], d[8], d[7], d[9] = code&1, code>>1&1, code>>2&7, code>>6
			if code&32 != 0 {
				if len(v) < 2 {
					break
				}
				d[4], d[5] = v[0], v[1]
				v = v[2:]
			}
			if d[9] > 0 {
				if len(v) < 1 {
					break
				}
				d[10] = v[0]
				v = v[1:]
			}
		}
		out = append(out, d)
	}
	if len(out) != k || len(v) != 0 {
		return nil, fmt.Errorf("throttle: unexpected lean script reply for %d decisions", k)
	}
	return out, nil
}

// flush sends queued batches while holding a pipeline slot, until the
// queue is empty (take then releases the slot).
func (b *batcher) flush(l *Limiter) {
	for {
		batch := b.take()
		if batch == nil {
			return
		}
		b.send(l, batch)
	}
}

// take removes the next batch from the queue, waiting up to linger for it
// to fill. It returns nil, and releases the caller's slot, when the queue is
// empty or another flusher is filling the next batch.
func (b *batcher) take() []*batchCall {
	b.mu.Lock()
	if len(b.queue) == 0 || b.full != nil {
		b.inflight--
		b.mu.Unlock()
		return nil
	}
	if b.linger > 0 && len(b.queue) < b.size {
		full := make(chan struct{})
		b.full = full
		b.mu.Unlock()
		t := time.NewTimer(b.linger)
		select {
		case <-full:
		case <-t.C:
		}
		t.Stop()
		b.mu.Lock()
		if b.full == full {
			b.full = nil
		}
		if len(b.queue) == 0 { // taken by a flusher that came as the batch filled
			b.inflight--
			b.mu.Unlock()
			return nil
		}
	}
	n := min(len(b.queue), b.size)
	batch := make([]*batchCall, n)
	copy(batch, b.queue)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	b.mu.Unlock()
	return batch
}

// send runs one pipeline and answers each live call. Lean decisions go in
// one lean.lua run per group of calls with the same shared arguments (on a
// Cluster, where one script cannot reach every tenant's slot, one run
// each); every other decision is its own EVALSHA.
func (b *batcher) send(l *Limiter, batch []*batchCall) {
	ctx := context.Background()
	_, oneNode := l.rdb.(*redis.Client)
	var runs []*batchRun
	var group *batchRun // the lean run that takes the next lean decision
	for _, c := range batch {
		if c.ctx.Err() != nil {
			continue // its caller has gone: do not decide for nobody
		}
		if c.lean && oneNode && group != nil && sameArgs(group.args, c.shared) {
			group.add(c)
			continue
		}
		r := &batchRun{lean: c.lean, script: l.algo.decide}
		if c.lean {
			r.script, r.args = leanScript, append([]any(nil), c.shared...)
			group = r
		}
		r.add(c)
		runs = append(runs, r)
	}
	exec := func(runs []*batchRun) {
		pipe := l.rdb.Pipeline()
		for _, r := range runs {
			r.cmd = r.script.EvalSha(ctx, pipe, r.keys, r.args...)
		}
		if pipe.Len() > 0 {
			_, _ = pipe.Exec(ctx) // errors are read per command
		}
	}
	exec(runs)
	var again []*batchRun
	for _, r := range runs {
		if isNoScript(r.cmd) {
			again = append(again, r)
		}
	}
	if len(again) > 0 {
		// first use, or the script cache was flushed: load the scripts once
		// and send again the decisions that did not run
		_ = l.algo.decide.Load(ctx, l.rdb).Err()
		_ = leanScript.Load(ctx, l.rdb).Err()
		exec(again)
	}
	for _, r := range runs {
		r.answer()
	}
	for _, c := range batch {
		if c.reply == nil && c.err == nil {
			c.err = c.ctx.Err()
			if c.err == nil {
				c.err = fmt.Errorf("throttle: batched decision got no reply")
			}
		}
		close(c.done)
	}
}

// batchRun is one script run of a batch: one decision, or several lean ones.
type batchRun struct {
	lean   bool
	script *redis.Script
	keys   []string
	args   []any
	calls  []*batchCall
	cmd    *redis.Cmd
}

func (r *batchRun) add(c *batchCall) {
	r.calls = append(r.calls, c)
	r.keys = append(r.keys, c.keys...)
	r.args = append(r.args, c.args...)
}

// answer gives each call its part of the reply.
func (r *batchRun) answer() {
	var reply []int64
	var ds [][]int64
	var err error
	if r.lean {
		var v any
		if v, err = r.cmd.Result(); err == nil {
			reply, err = leanReply(v)
		}
		if err == nil {
			ds, err = leanReplies(reply, len(r.calls))
		}
	} else {
		reply, err = r.cmd.Int64Slice()
	}
	for i, c := range r.calls {
		switch {
		case err != nil:
			c.err = err
		case r.lean:
			c.reply = ds[i]
		default:
			c.reply = reply
		}
	}
}

// sameArgs reports whether two lean runs' shared arguments are equal.
func sameArgs(a, b []any) bool {
	if len(a) < len(b) {
		return false
	}
	for i := range b {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func isNoScript(cmd *redis.Cmd) bool {
	return cmd != nil && cmd.Err() != nil && strings.HasPrefix(cmd.Err().Error(), "NOSCRIPT")
}
