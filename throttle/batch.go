package throttle

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// WithBatching lets concurrent decisions share round trips: decisions made
// while others are in flight are sent together, up to size (<= 0: 64), in
// one script run on one Redis node (one run each, in one pipeline, on a
// Cluster). Each is still decided atomically, exactly as alone. A decision
// made while nothing is in flight goes at once. linger > 0 holds a batch up
// to linger to fill; 0, recommended, adds no latency. Default off.
//
// It pays when many goroutines of one process decide at once (see
// BENCHMARKS.md); a caller whose context ends while it waits returns the
// context's error, and its decision may still have been applied.
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

// batcher queues decisions and sends them in pipelines: a pipeline is sent
// as soon as one of batchPipelines slots is free, holding what has queued
// meanwhile; under load batches form by themselves while earlier pipelines
// are in flight, and a lone caller is not held back.
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
	// shared is decide.lua's first argument, which every decision of a
	// run shares (the Limiter's settings), own the decision's own
	shared string
	own    []any
	reply  []byte // its record
	err    error
	done   chan struct{}
}

// decide runs one decision with decide.lua: in its own round trip, or with
// batching in a run it shares with other decisions.
func (l *Limiter) decide(ctx context.Context, c *batchCall) ([]byte, error) {
	c.ctx = ctx
	if l.batch == nil {
		return l.decideNow(ctx, c)
	}
	return l.batch.do(ctx, l, c)
}

func (b *batcher) do(ctx context.Context, l *Limiter, c *batchCall) ([]byte, error) {
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
func (l *Limiter) decideNow(ctx context.Context, c *batchCall) ([]byte, error) {
	args := append([]any{c.shared}, c.own...)
	cmd := l.call(ctx, l.rdb, c.keys, args)
	if missing(cmd) {
		l.load(ctx, cmd.Err())
		cmd = l.call(ctx, l.rdb, c.keys, args)
	}
	return replyBytes(cmd)
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

// send runs one pipeline and answers each live call. The decisions go in
// one decide.lua run per group of calls with the same shared arguments (on
// a Cluster, where one script cannot reach every tenant's slot, one run
// each).
func (b *batcher) send(l *Limiter, batch []*batchCall) {
	ctx := context.Background()
	_, oneNode := l.rdb.(*redis.Client)
	var runs []*batchRun
	for _, c := range batch {
		if c.ctx.Err() != nil {
			continue // its caller has gone: do not decide for nobody
		}
		if n := len(runs); oneNode && n > 0 && runs[n-1].shared == c.shared {
			runs[n-1].add(c)
			continue
		}
		r := &batchRun{shared: c.shared, args: []any{c.shared}}
		r.add(c)
		runs = append(runs, r)
	}
	exec := func(runs []*batchRun) {
		pipe := l.rdb.Pipeline()
		for _, r := range runs {
			r.cmd = l.call(ctx, pipe, r.keys, r.args)
		}
		if pipe.Len() > 0 {
			_, _ = pipe.Exec(ctx) // errors are read per command
		}
	}
	exec(runs)
	var again []*batchRun
	for _, r := range runs {
		if missing(r.cmd) {
			again = append(again, r)
		}
	}
	if len(again) > 0 {
		// first use, or the server lost the code: load it once and send
		// again the decisions that did not run
		l.load(ctx, again[0].cmd.Err())
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

// batchRun is one script run of a batch: one or more decisions.
type batchRun struct {
	shared string
	keys   []string
	args   []any
	calls  []*batchCall
	cmd    *redis.Cmd
}

func (r *batchRun) add(c *batchCall) {
	r.calls = append(r.calls, c)
	r.keys = append(r.keys, c.keys...)
	r.args = append(r.args, c.own...)
}

// answer gives each call its part of the reply: its record (see
// decodeReply).
func (r *batchRun) answer() {
	if len(r.calls) == 1 {
		c := r.calls[0]
		c.reply, c.err = replyBytes(r.cmd)
		return
	}
	// several decisions: an array of records
	v, err := r.cmd.Slice()
	if err == nil && len(v) != len(r.calls) {
		err = fmt.Errorf("throttle: unexpected script reply of %d records for %d decisions", len(v), len(r.calls))
	}
	for i, c := range r.calls {
		if err != nil {
			c.err = err
			continue
		}
		s, ok := v[i].(string)
		if !ok {
			c.err = fmt.Errorf("throttle: unexpected script reply %v for a decision", v[i])
			continue
		}
		c.reply = []byte(s)
	}
}

// replyBytes returns the record a run of decide.lua answered.
func replyBytes(cmd *redis.Cmd) ([]byte, error) {
	s, err := cmd.Text()
	return []byte(s), err
}
