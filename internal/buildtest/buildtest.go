// Package buildtest builds quotaq's commands for tests that run them as a
// user does, and runs them with an environment of the test's choosing.
package buildtest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	dir   string
	built = map[string]*binary{}
)

type binary struct {
	once sync.Once
	path string
	err  error
}

// Command returns the path of a binary called name built from the main
// package pkg ("github.com/quotaq/quotaq/cmd/worker"), built once per test
// process. Call Cleanup from TestMain.
func Command(tb testing.TB, name, pkg string) string {
	tb.Helper()
	mu.Lock()
	if dir == "" {
		d, err := os.MkdirTemp("", "quotaq-bin-")
		if err != nil {
			mu.Unlock()
			tb.Fatal(err)
		}
		dir = d
	}
	b := built[pkg]
	if b == nil {
		b = &binary{path: filepath.Join(dir, name)}
		built[pkg] = b
	}
	mu.Unlock()
	b.once.Do(func() {
		if out, err := exec.Command("go", "build", "-o", b.path, pkg).CombinedOutput(); err != nil {
			b.err = errors.New("go build " + pkg + ": " + err.Error() + ": " + string(out))
		}
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}

// Cleanup removes the binaries Command built.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// Run runs the binary at path with args and stdin, in the test process's
// environment without its REDIS_* and QUOTAQ_* variables, plus env. It
// returns the exit code and what the binary wrote.
func Run(tb testing.TB, path string, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	tb.Helper()
	cmd := exec.Command(path, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REDIS_") && !strings.HasPrefix(kv, "QUOTAQ_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		tb.Fatalf("run %s: %v", path, err)
	}
	return code, out.String(), errb.String()
}
