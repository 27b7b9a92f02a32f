package asynqrequeue

import (
	"container/heap"
	"context"
	"log/slog"
	"sync"
	"time"
)

// wakeBatch is the most tasks one Wake call moves.
const wakeBatch = 200

// Waker brings re-queued tasks back to their queue at their due time, from
// one goroutine that sleeps until the earliest due time. It is safe for
// concurrent use. Tasks it does not wake (it was stopped, it was full, or
// Redis failed) are still brought back by asynq's forwarder, later.
type Waker struct {
	r      *Requeuer
	logger *slog.Logger
	max    int

	mu     sync.Mutex
	due    dueHeap
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

// NewWaker returns a Waker that tracks at most max tasks (beyond that it
// leaves them to asynq's forwarder) and starts its goroutine. Stop it with
// Stop.
func NewWaker(r *Requeuer, logger *slog.Logger, max int) *Waker {
	if logger == nil {
		logger = slog.Default()
	}
	w := &Waker{r: r, logger: logger, max: max, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Add asks the Waker to bring task id of queue back at dueMillis (unix ms,
// as in Outcome.DueMillis). It reports whether the task is tracked.
func (w *Waker) Add(queue, id string, dueMillis int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || len(w.due) >= w.max {
		return false
	}
	heap.Push(&w.due, entry{queue: queue, Due: Due{ID: id, DueMillis: dueMillis}})
	if w.due[0].DueMillis == dueMillis {
		select { // the earliest changed: wake the loop to re-arm its timer
		case w.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// Len returns the number of tasks waiting to be woken.
func (w *Waker) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.due)
}

// Stop stops the Waker's goroutine and waits for it. Tasks not yet woken
// are left to asynq's forwarder.
func (w *Waker) Stop() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	<-w.done
}

func (w *Waker) run() {
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := w.wakeDue()
		if next > 0 {
			timer.Reset(next)
		}
		select {
		case <-w.stop:
			return
		case <-w.kick:
		case <-timer.C:
		}
	}
}

// wakeDue wakes every task that is due and returns how long until the next
// one is (0 when none is tracked: wait for a kick).
func (w *Waker) wakeDue() time.Duration {
	for {
		now := time.Now().UnixMilli()
		byQueue := map[string][]Due{}
		n := 0
		w.mu.Lock()
		for len(w.due) > 0 && w.due[0].DueMillis <= now && n < wakeBatch {
			e := heap.Pop(&w.due).(entry)
			byQueue[e.queue] = append(byQueue[e.queue], e.Due)
			n++
		}
		var next time.Duration
		if len(w.due) > 0 {
			next = max(time.Duration(w.due[0].DueMillis-now)*time.Millisecond, time.Millisecond)
		}
		w.mu.Unlock()
		for queue, tasks := range byQueue {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := w.r.Wake(ctx, queue, tasks); err != nil {
				w.logger.Warn("asynqrequeue: could not wake re-queued tasks; asynq's forwarder will bring them back later",
					"queue", queue, "tasks", len(tasks), "err", err)
			}
			cancel()
		}
		if n < wakeBatch {
			return next
		}
	}
}

type entry struct {
	queue string
	Due
}

type dueHeap []entry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].DueMillis < h[j].DueMillis }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
