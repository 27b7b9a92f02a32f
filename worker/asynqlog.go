package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
)

// NewAsynqLogger returns an asynq.Logger that writes to l, at the matching
// slog level, with the attribute component=asynq. asynq's own level filter
// (Config.LogLevel) applies first.
func NewAsynqLogger(l *slog.Logger) asynq.Logger {
	return &slogAsynq{l: l.With("component", "asynq")}
}

type slogAsynq struct{ l *slog.Logger }

func (s *slogAsynq) log(level slog.Level, args ...any) {
	s.l.Log(context.Background(), level, strings.TrimSpace(fmt.Sprint(args...)))
}

func (s *slogAsynq) Debug(args ...any) { s.log(slog.LevelDebug, args...) }
func (s *slogAsynq) Info(args ...any)  { s.log(slog.LevelInfo, args...) }
func (s *slogAsynq) Warn(args ...any)  { s.log(slog.LevelWarn, args...) }
func (s *slogAsynq) Error(args ...any) { s.log(slog.LevelError, args...) }
func (s *slogAsynq) Fatal(args ...any) {
	s.log(slog.LevelError+4, args...)
	os.Exit(1)
}

// quietLogger drops the lines asynq v0.26 writes about a task the Throttler
// put back ("revoke task id=X", and "Could not remove task id=X ... NOT
// FOUND", from the Done that finds the task already moved): they are the
// expected effect of a re-queue, not problems. It lets asynq's debug line
// "All queues are empty" through once per emptyQueuesEvery. Everything else
// goes through.
type quietLogger struct {
	next    asynq.Logger
	revoked *revokedSet
	// emptyAt is when "All queues are empty" last went through (UnixNano)
	emptyAt atomic.Int64
}

// emptyQueuesMsg is what asynq logs at debug level each time one of its
// workers finds no task: tens of times a second from an idle worker.
const emptyQueuesMsg = "All queues are empty"

// emptyQueuesEvery is how often emptyQueuesMsg goes through at most.
const emptyQueuesEvery = time.Minute

// emptyQueuesDue reports whether emptyQueuesMsg may go through now, and if
// so records that it did.
func (q *quietLogger) emptyQueuesDue() bool {
	now := time.Now().UnixNano()
	last := q.emptyAt.Load()
	if last != 0 && now-last < int64(emptyQueuesEvery) {
		return false
	}
	return q.emptyAt.CompareAndSwap(last, now)
}

func (q *quietLogger) quiet(args []any) bool {
	if len(args) != 1 {
		return false
	}
	msg, ok := args[0].(string)
	if !ok {
		return false
	}
	var rest string
	switch {
	case strings.HasPrefix(msg, "revoke task id="):
		rest = msg[len("revoke task id="):]
	case strings.HasPrefix(msg, "Could not remove task id=") && strings.Contains(msg, "NOT FOUND"):
		rest = msg[len("Could not remove task id="):]
	default:
		return false
	}
	id, _, _ := strings.Cut(rest, " ")
	return q.revoked.has(id)
}

func (q *quietLogger) Debug(args ...any) {
	if len(args) == 1 && args[0] == emptyQueuesMsg {
		if q.emptyQueuesDue() {
			q.next.Debug(emptyQueuesMsg + " (logged once a minute at most)")
		}
		return
	}
	q.next.Debug(args...)
}
func (q *quietLogger) Info(args ...any)  { q.next.Info(args...) }
func (q *quietLogger) Fatal(args ...any) { q.next.Fatal(args...) }
func (q *quietLogger) Warn(args ...any) {
	if !q.quiet(args) {
		q.next.Warn(args...)
	}
}
func (q *quietLogger) Error(args ...any) {
	if !q.quiet(args) {
		q.next.Error(args...)
	}
}

// revokedKeep is how long a re-queued task's id is remembered: longer than
// asynq keeps retrying the failed Done (until the run's lease deadline, at
// most 30 s after the last heartbeat) and than its shutdown flush.
const revokedKeep = 2 * time.Minute

// revokedSet remembers the ids of tasks recently put back.
type revokedSet struct {
	mu    sync.Mutex
	ids   map[string]time.Time
	purge time.Time
}

func (s *revokedSet) add(id string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = make(map[string]time.Time)
	}
	s.ids[id] = now
	if now.Sub(s.purge) > revokedKeep {
		for k, at := range s.ids {
			if now.Sub(at) > revokedKeep {
				delete(s.ids, k)
			}
		}
		s.purge = now
	}
}

func (s *revokedSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.ids[id]
	return ok && time.Since(at) <= revokedKeep
}
