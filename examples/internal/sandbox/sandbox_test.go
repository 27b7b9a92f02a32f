package sandbox

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func TestCleanupRemovesOnlyTheRun(t *testing.T) {
	t.Parallel()
	rdb, other := redistest.Client(t)
	ctx := context.Background()
	a, b := New("demo"), New("demo")
	if a.Prefix == b.Prefix || !strings.HasPrefix(a.Prefix, "demo-") {
		t.Fatalf("prefixes %q and %q: want distinct demo-<random>", a.Prefix, b.Prefix)
	}
	qa, qb := a.Queue(""), b.Queue("control")
	if qa != a.Prefix || qb != b.Prefix+"-control" {
		t.Errorf("queues %q %q", qa, qb)
	}
	client := asynq.NewClientFromRedisClient(rdb)
	for _, q := range []string{qa, qb} {
		if _, err := client.Enqueue(asynq.NewTask("t", nil), asynq.Queue(q)); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{a.Prefix + ":{x}:state", a.Prefix + "-upstream:{y}:policy", b.Prefix + ":{x}:state", other + ":keep"} {
		if err := rdb.Set(ctx, k, "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Cleanup(rdb); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]int64{
		a.Prefix + ":{x}:state": 0, a.Prefix + "-upstream:{y}:policy": 0,
		b.Prefix + ":{x}:state": 1, other + ":keep": 1,
	} {
		if n := rdb.Exists(ctx, k).Val(); n != want {
			t.Errorf("after a.Cleanup, %s exists=%d, want %d", k, n, want)
		}
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if _, err := insp.GetQueueInfo(qa); err == nil {
		t.Errorf("queue %s still there", qa)
	}
	if info, err := insp.GetQueueInfo(qb); err != nil || info.Pending != 1 {
		t.Errorf("queue %s of the other run: %v %v", qb, info, err)
	}
}
