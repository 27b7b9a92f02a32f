package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// A tiny run of every part: the harness, the worker and the shaper work end
// to end and every task is processed. It measures nothing (benchmarks are run
// by hand, see BENCHMARKS.md).
func TestRunSmoke(t *testing.T) {
	var out bytes.Buffer
	cfg := config{parts: []string{"throughput", "backlog", "noisy"}, concurrency: 10, tasks: 200, tenants: 10,
		backlog: 70, backlogRate: 50, noisy: 200, noisyRate: 10, quiet: 10, quietRate: 1000,
		quietOver: 100 * time.Millisecond, maxTime: time.Minute, rounds: 1,
		ways: map[string]bool{"plain": true, "shaped": true}}
	if err := run(&out, cfg); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"| plain asynq |", "| quotaq middleware |", "| as they come", "| shaped at enqueue"} {
		if !strings.Contains(s, want) {
			t.Errorf("no row %q in:\n%s", want, s)
		}
	}
	if strings.Contains(s, "stopped after") || strings.Contains(s, "quiet tasks ran within") {
		t.Errorf("a part did not finish:\n%s", s)
	}
}
