package throttle

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// WithBatching lets concurrent decisions share round trips: decisions of
// any tenants made at the same time by this Limiter are sent together, one
// EVALSHA each, in one pipeline. Each decision is still its own atomic
// script run, exactly as without batching; only the trips to Redis are
// shared. Default off: each decision is its own round trip.
//
// A pipeline is sent as soon as one of the Limiter's pipelines slots is
// free (it keeps at most 4 in flight), holding what has queued meanwhile,
// up to size decisions; linger > 0 makes it wait up to linger for the batch
// to fill first, which can make batches larger at the cost of that much
// latency when the load is light. size <= 0 means 64; linger 0 is
// recommended: under load, batches form by themselves while earlier
// pipelines are in flight, and a lone caller is not held back.
//
// A caller whose context ends while its decision waits returns the
// context's error; a decision already sent may still have been applied in
// Redis, as with any cancelled call.
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
	ctx   context.Context
	keys  []string
	args  []any
	reply []int64
	err   error
	done  chan struct{}
}

// decide runs the decision script with keys and args: in its own round trip,
// or with batching in a shared one.
func (l *Limiter) decide(ctx context.Context, keys []string, args []any) ([]int64, error) {
	if l.batch == nil {
		return l.algo.decide.Run(ctx, l.rdb, keys, args...).Int64Slice()
	}
	return l.batch.do(ctx, l, keys, args)
}

func (b *batcher) do(ctx context.Context, l *Limiter, keys []string, args []any) ([]int64, error) {
	c := &batchCall{ctx: ctx, keys: keys, args: args, done: make(chan struct{})}
	b.mu.Lock()
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

// send runs one pipeline of EVALSHA, one per live call, and answers each.
func (b *batcher) send(l *Limiter, batch []*batchCall) {
	ctx := context.Background()
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, c := range batch {
		if c.ctx.Err() != nil {
			continue // its caller has gone: do not decide for nobody
		}
		cmds[i] = l.algo.decide.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(ctx) // errors are read per command
	}
	if noScript(cmds) {
		// first use, or the script cache was flushed: load the script once
		// and send again the decisions that did not run
		if err := l.algo.decide.Load(ctx, l.rdb).Err(); err == nil {
			pipe := l.rdb.Pipeline()
			for i, cmd := range cmds {
				if isNoScript(cmd) {
					cmds[i] = l.algo.decide.EvalSha(ctx, pipe, batch[i].keys, batch[i].args...)
				}
			}
			_, _ = pipe.Exec(ctx)
		}
	}
	for i, c := range batch {
		if cmds[i] == nil {
			c.err = c.ctx.Err()
		} else {
			c.reply, c.err = cmds[i].Int64Slice()
		}
		close(c.done)
	}
}

func isNoScript(cmd *redis.Cmd) bool {
	return cmd != nil && cmd.Err() != nil && strings.HasPrefix(cmd.Err().Error(), "NOSCRIPT")
}

func noScript(cmds []*redis.Cmd) bool {
	for _, cmd := range cmds {
		if isNoScript(cmd) {
			return true
		}
	}
	return false
}
