package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/quotaq/quotaq/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// Two worker processes, tasks from the CLI: each tenant's limit holds in
// total, on the embedded Redis and on a redis-server given as REDIS_URL.
func TestShortRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string
		where string
	}{
		{"Embedded", nil, "(embedded, in memory)"},
		{"RedisURL", map[string]string{"REDIS_URL": "redis://" + redistest.Addr(t) + "/0"}, "redis://127.0.0.1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errs bytes.Buffer
			code := run(context.Background(), []string{"-short"}, env(tt.env), &out, &errs)
			if code != 0 {
				t.Fatalf("exit code %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
			}
			for _, want := range []string{
				tt.where,
				"$ quotaq-enqueue policy set acme --rate 20 --burst 1",
				"started worker 2",
				"  acme    20/s    35/s           60/60",
				"OK: 2 workers shared every tenant's limit",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func TestProblems(t *testing.T) {
	t.Parallel()
	good := Summary{Rows: []Row{{ID: "acme", Rate: 20, Tasks: 60, Served: 60, Achieved: 19.9, ByWorker: []int64{31, 29}}}}
	tests := []struct {
		name   string
		change func(*Summary)
		want   string
	}{
		{"Good", func(*Summary) {}, ""},
		{"NotServed", func(s *Summary) { s.Rows[0].Served = 50; s.TimedOut = true }, "acme: the upstream served 50 of 60 tasks"},
		{"Refused", func(s *Summary) { s.Rows[0].Refused = 4 }, "acme: the upstream answered 429 4 times"},
		{"RatePerWorker", func(s *Summary) { s.Rows[0].Achieved = 40 }, "acme: 40.0/s reached the upstream, above the policy's 20/s"},
		{"OneWorkerIdle", func(s *Summary) { s.Rows[0].ByWorker = []int64{60, 0} }, "acme: worker 2 ran none of its tasks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := good
			s.Rows = []Row{good.Rows[0]}
			s.Rows[0].ByWorker = append([]int64(nil), good.Rows[0].ByWorker...)
			tt.change(&s)
			got := strings.Join(s.Problems(), "\n")
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("problems %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "-short"},
		{[]string{"--nope"}, 2, "flag provided but not defined"},
		{[]string{"x"}, 2, `unexpected argument "x"`},
	} {
		var out, errs bytes.Buffer
		if code := run(context.Background(), tt.args, env(nil), &out, &errs); code != tt.code || !strings.Contains(errs.String(), tt.want) {
			t.Errorf("run(%q) = %d, stderr %q; want %d, %q", tt.args, code, errs.String(), tt.code, tt.want)
		}
	}
}
