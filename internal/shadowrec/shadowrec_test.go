package shadowrec

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/internal/wait"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func TestRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// each step writes one record, then reads the state of tenants a, b, c
	type step struct {
		rec         Record
		wantLive    int
		wantWorkers int
		wantCounts  map[string]int64
		wantOthers  int64
	}
	alive := func(worker string, counts map[string]int64) Record {
		return Record{Worker: worker, TTL: time.Minute, Keep: time.Hour, MaxTenants: 2, Throttled: counts}
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"TwoWorkersAddUp", []step{
			{alive("w1", map[string]int64{"a": 3}), 1, 1, map[string]int64{"a": 3}, 0},
			{alive("w2", map[string]int64{"a": 2, "b": 1}), 2, 2, map[string]int64{"a": 5, "b": 1}, 0},
			{alive("w1", nil), 2, 2, map[string]int64{"a": 5, "b": 1}, 0},
		}},
		{"TenantsPastTheMostAreAddedUp", []step{
			{alive("w1", map[string]int64{"a": 1, "b": 1}), 1, 1, map[string]int64{"a": 1, "b": 1}, 0},
			{alive("w1", map[string]int64{"c": 4, "a": 1}), 1, 1, map[string]int64{"a": 2, "b": 1}, 4},
		}},
		{"StoppedWorkersLeaveTheirCounts", []step{
			{alive("w1", map[string]int64{"a": 1}), 1, 1, map[string]int64{"a": 1}, 0},
			{alive("w2", nil), 2, 2, map[string]int64{"a": 1}, 0},
			{Record{Worker: "w1", Keep: time.Hour, MaxTenants: 2, Throttled: map[string]int64{"b": 2}}, 1, 1, map[string]int64{"a": 1, "b": 2}, 0},
			{Record{Worker: "w2", Keep: time.Hour, MaxTenants: 2}, 0, 0, map[string]int64{"a": 1, "b": 2}, 0},
		}},
		{"OthersOfAWorkerAreAddedUp", []step{
			{Record{Worker: "w1", TTL: time.Minute, Keep: time.Hour, MaxTenants: 2, Throttled: map[string]int64{"a": 1}, Others: 7}, 1, 1, map[string]int64{"a": 1}, 7},
		}},
		{"AWorkerWithNothingToCountWritesNoCounts", []step{
			{alive("w1", nil), 1, 1, map[string]int64{}, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb, prefix := redistest.Client(t)
			for i, s := range tt.steps {
				live, err := Write(ctx, rdb, prefix, s.rec)
				if err != nil {
					t.Fatal(err)
				}
				st, err := Read(ctx, rdb, prefix, "a", "b", "c")
				if err != nil {
					t.Fatal(err)
				}
				if live != s.wantLive || st.Workers != s.wantWorkers || !equal(st.Throttled, s.wantCounts) || st.Others != s.wantOthers {
					t.Errorf("step %d: live %d, state %+v; want live %d, %d workers, counts %v, others %d",
						i, live, st, s.wantLive, s.wantWorkers, s.wantCounts, s.wantOthers)
				}
				if counted := len(s.wantCounts) > 0; st.Since.IsZero() == counted || st.On() != (counted || st.Workers > 0) {
					t.Errorf("step %d: since %v, on %v, with counts %v", i, st.Since, st.On(), s.wantCounts)
				}
			}
		})
	}
}

// A worker that stops writing (it died) is no longer counted once its
// entry runs out, and the counts go when they have been kept long enough.
func TestRecordRunsOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	rec := Record{Worker: "w1", TTL: 100 * time.Millisecond, Keep: 300 * time.Millisecond, MaxTenants: 10, Throttled: map[string]int64{"a": 1}}
	if _, err := Write(ctx, rdb, prefix, rec); err != nil {
		t.Fatal(err)
	}
	read := func() State {
		st, err := Read(ctx, rdb, prefix, "a")
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := read(); st.Workers != 1 || st.Throttled["a"] != 1 {
		t.Fatalf("just written: %+v", st)
	}
	wait.For(t, 5*time.Second, "the worker's entry to run out", func() bool { return read().Workers == 0 })
	if st := read(); st.Throttled["a"] != 1 {
		t.Logf("counts gone with the entry (kept %s): %+v", rec.Keep, st) // a slow machine may pass both
	}
	wait.For(t, 5*time.Second, "the counts to go", func() bool { return !read().On() })
	if n, err := rdb.Exists(ctx, workersKey(prefix), throttledKey(prefix)).Result(); err != nil || n != 0 {
		t.Errorf("%d keys left (%v), want none", n, err)
	}
}

func equal(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
