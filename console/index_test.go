package console

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/tenantstatus"
	"github.com/quotaq/quotaq/internal/wait"
)

func TestSnapshotIsRetakenInTheBackground(t *testing.T) {
	t.Parallel()
	var x index
	var takes atomic.Int64
	var fail atomic.Bool
	take := func() *snapshot {
		n := takes.Add(1)
		if fail.Load() {
			return &snapshot{taken: time.Now(), err: errors.New("redis went away")}
		}
		return &snapshot{rows: make([]tenantstatus.Status, n), taken: time.Now()}
	}
	ctx := context.Background()

	s, failed := x.get(ctx, time.Hour, take)
	if s == nil || len(s.rows) != 1 || failed != nil {
		t.Fatalf("first get: %v, %v; want the first snapshot, waited for", s, failed)
	}
	if s, _ = x.get(ctx, time.Hour, take); len(s.rows) != 1 || takes.Load() != 1 {
		t.Errorf("a fresh snapshot was taken again (%d takes)", takes.Load())
	}

	// an old one is served while the next is taken
	if s, _ = x.get(ctx, 0, take); len(s.rows) != 1 {
		t.Errorf("get of a stale snapshot returned %d rows, want the old one's 1", len(s.rows))
	}
	wait.For(t, 5*time.Second, "the second snapshot", func() bool {
		s, _ := x.get(ctx, time.Hour, take)
		return len(s.rows) == 2
	})

	// a failed retake keeps the rows and says why they are old
	fail.Store(true)
	x.get(ctx, 0, take)
	wait.For(t, 5*time.Second, "the failure to be reported", func() bool {
		s, failed := x.get(ctx, time.Hour, take)
		return len(s.rows) == 2 && failed != nil
	})
	fail.Store(false)
	x.get(ctx, 0, take)
	wait.For(t, 5*time.Second, "a retake after the failure", func() bool {
		s, failed := x.get(ctx, time.Hour, take)
		return len(s.rows) > 2 && failed == nil
	})
}

func TestSlowSnapshotsAreTakenLessOften(t *testing.T) {
	t.Parallel()
	var x index
	var takes atomic.Int64
	take := func() *snapshot {
		takes.Add(1)
		return &snapshot{taken: time.Now(), took: time.Hour} // as if it had taken an hour
	}
	x.get(context.Background(), 0, take)
	x.get(context.Background(), 0, take)
	if n := takes.Load(); n != 1 {
		t.Errorf("%d snapshots taken, want 1: one that took an hour is good for four", n)
	}
}

func TestFirstSnapshotWaitIsBoundedByTheRequest(t *testing.T) {
	t.Parallel()
	var x index
	release := make(chan struct{})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := x.get(ctx, 0, func() *snapshot { <-release; return &snapshot{} })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want the request's cancellation", err)
	}
}
