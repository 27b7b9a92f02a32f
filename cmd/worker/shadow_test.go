package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/internal/enqueuecli"
	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/internal/wait"
	"github.com/quotaq/quotaq/worker"
)

// --shadow is read from the command line, QUOTAQ_SHADOW and the config
// file's "shadow" key, each overriding the one before; a value that is not
// a boolean is a usage error naming it.
func TestShadowFlagVariableAndConfigKey(t *testing.T) {
	t.Parallel()
	on, off := writeFile(t, "shadow: true\n"), writeFile(t, "shadow: false\n")
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want bool
	}{
		{"OffByDefault", nil, nil, false},
		{"Flag", []string{"--shadow"}, nil, true},
		{"Variable", nil, map[string]string{"QUOTAQ_SHADOW": "true"}, true},
		{"ConfigFile", []string{"--config", on}, nil, true},
		{"VariableOverFile", []string{"--config", on}, map[string]string{"QUOTAQ_SHADOW": "false"}, false},
		{"FlagOverVariable", []string{"--config", off, "--shadow=true"}, map[string]string{"QUOTAQ_SHADOW": "false"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseFlags(tc.args, env(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if o.shadow != tc.want {
				t.Errorf("shadow %v, want %v", o.shadow, tc.want)
			}
		})
	}
	t.Run("NotABoolean", func(t *testing.T) {
		t.Parallel()
		_, err := parseFlags(nil, env(map[string]string{"QUOTAQ_SHADOW": "maybe"}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), `QUOTAQ_SHADOW="maybe"`) {
			t.Errorf("error %v, want one naming QUOTAQ_SHADOW=\"maybe\"", err)
		}
	})
}

// quotaq-worker --shadow runs a backlog far above its tenant's default
// rate at once, counts the would-be throttles in its metrics, and
// quotaq-enqueue status says decisions are in shadow.
func TestShadowWorkerRunsEveryTaskAndSaysSo(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	url := "redis://" + redistest.Addr(t) + "/0"
	queue := "q-" + prefix
	// a token per 100 s after a burst of 2: no refill during the test
	w := startWorker(t, []string{"--redis-url", url, "--prefix", prefix, "--queues", queue, "--echo-types", "job",
		"--default-rate", "0.01", "--default-burst", "2", "--shadow"}, nil)
	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	const n = 10
	for i := range n {
		task := asynq.NewTaskWithHeaders("job", fmt.Appendf(nil, `{"i":%d}`, i), map[string]string{worker.TenantHeader: "acme"})
		if _, err := client.Enqueue(task, asynq.Queue(queue), asynq.MaxRetry(0)); err != nil {
			t.Fatal(err)
		}
	}
	ins := asynq.NewInspectorFromRedisClient(rdb)
	t.Cleanup(func() { _ = ins.Close() })
	wait.For(t, 20*time.Second, "all tasks to run", func() bool {
		q, err := ins.GetQueueInfo(queue)
		return err == nil && q.Processed == n && q.Pending == 0 && q.Scheduled == 0 && q.Active == 0
	})
	_, body := w.get(t, "/metrics")
	for _, want := range []string{
		"quotaq_worker_shadow_mode 1",
		`quotaq_worker_shadow_throttled_total{reason="rate",type="job"} 8`,
		`quotaq_worker_requeued_total{type="job"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var out, errb wait.Buffer
	if code := enqueuecli.Run(context.Background(), []string{"status", "--queues", queue, "--redis-url", url, "--prefix", prefix}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("status: exit %d, %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "shadow mode: 1 worker counts what it would throttle and runs every task") {
		t.Errorf("status does not say the worker runs in shadow:\n%s", out.String())
	}
}
