package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quotaq/quotaq/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// The example runs to its end on the embedded Redis and on a redis-server
// given as REDIS_URL: every task once, each tenant within its policy.
func TestRunsEveryTaskAtItsTenantsRate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"Embedded", nil},
		{"RedisURL", map[string]string{"REDIS_URL": "redis://" + redistest.Addr(t) + "/0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errs bytes.Buffer
			if code := run(context.Background(), env(tt.env), &out, &errs); code != 0 {
				t.Fatalf("exit code %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
			}
			for _, want := range []string{"acme    10 tasks, policy 5/s burst 1", "globex   5 tasks, policy 2/s burst 1", "OK: every task ran once"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// README.md shows runWorker as it is in worker.go: every line of the
// README's code block is a line of worker.go, so the README cannot drift
// from the code that is compiled and run.
func TestReadmeShowsRunWorker(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile("worker.go")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Add quotaq to your asynq worker")
	if !ok {
		t.Fatal(`README.md has no "## Add quotaq to your asynq worker" section`)
	}
	_, block, ok := strings.Cut(section, "```go\n")
	if !ok {
		t.Fatal("the section has no ```go block")
	}
	block, _, _ = strings.Cut(block, "```")
	lines := map[string]bool{}
	for _, l := range strings.Split(string(code), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	shown := 0
	for _, l := range strings.Split(block, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l == "..." {
			continue
		}
		shown++
		if !lines[l] {
			t.Errorf("README.md's runWorker has a line worker.go does not: %q", l)
		}
	}
	if shown < 20 {
		t.Errorf("README.md's code block has %d lines; want runWorker whole", shown)
	}
}
