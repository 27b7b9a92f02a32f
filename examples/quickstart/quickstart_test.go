package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/redisconn"
	"github.com/quotaq/quotaq/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// The README's first command, in its CI size, on the embedded Redis: it ends
// by itself and says OK.
func TestShortRunOnTheEmbeddedRedis(t *testing.T) {
	t.Parallel()
	var out, errs bytes.Buffer
	code := run(context.Background(), []string{"-short"}, env(nil), &out, &errs, false)
	if code != 0 {
		t.Fatalf("exit code %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
	}
	for _, want := range []string{
		"(embedded, in memory)",
		"OK: all 100 tasks processed",
		"no 429 from the upstream",
		"upstream: 100 served, 0 refused (429), 0 failed",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// The same on a real redis-server given as REDIS_URL, checked field by field.
func TestShortRunOnRedisServer(t *testing.T) {
	t.Parallel()
	sc := shortScenario()
	var last Summary
	s, err := quickstart(context.Background(), config{
		Scenario: sc,
		Redis:    redisconn.Config{Env: env(map[string]string{"REDIS_URL": "redis://" + redistest.Addr(t) + "/0"})},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Tick:     100 * time.Millisecond,
		Draw:     func(s Summary) { last = s },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !last.Final || s.Embedded {
		t.Errorf("last drawn summary final=%v, embedded=%v; want the final one, on redis-server", last.Final, s.Embedded)
	}
	if p := s.Problems(); len(p) > 0 {
		t.Errorf("problems: %q", p)
	}
	if len(s.Rows) != len(sc.Tenants) {
		t.Fatalf("%d rows, want %d", len(s.Rows), len(sc.Tenants))
	}
	for i, r := range s.Rows {
		want := sc.Tenants[i]
		if r.ID != want.ID || r.Processed != want.Tasks || r.Served != int64(want.Tasks) || r.Refused != 0 {
			t.Errorf("%s: processed %d, upstream served %d refused %d; want %d, %d, 0",
				r.ID, r.Processed, r.Served, r.Refused, want.Tasks, want.Tasks)
		}
		if r.Rate > want.Policy.Rate*rateSlack {
			t.Errorf("%s: %.1f/s, above its policy %g/s", r.ID, r.Rate, want.Policy.Rate)
		}
		// Each tenant had more tasks than its burst: the throttle put some back.
		if r.Throttled == 0 || r.Requeued == 0 {
			t.Errorf("%s: throttled %d, re-queued %d; the backlog was never throttled", r.ID, r.Throttled, r.Requeued)
		}
		if q := want.Policy.Quota; q > 0 {
			if s.Resets < 1 {
				t.Errorf("%s: no quota reset ran", r.ID)
			}
			if int64(r.Processed) > q*(s.Resets+1) {
				t.Errorf("%s: %d processed with a quota of %d and %d resets", r.ID, r.Processed, q, s.Resets)
			}
		}
	}
	if s.Failed != 0 {
		t.Errorf("%d tasks failed", s.Failed)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"Help", []string{"--help"}, 0, "-short"},
		{"UnknownFlag", []string{"--fast"}, 2, "flag provided but not defined: -fast"},
		{"Argument", []string{"now"}, 2, `unexpected argument "now"`},
		{"BadRedisURL", []string{"--redis-url", "http://localhost"}, 2, "redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errs bytes.Buffer
			code := run(context.Background(), tt.args, env(nil), &out, &errs, false)
			if code != tt.code || !strings.Contains(errs.String(), tt.want) {
				t.Errorf("run(%q) = %d, stderr:\n%s\nwant %d and %q", tt.args, code, errs.String(), tt.code, tt.want)
			}
		})
	}
}

func TestProblems(t *testing.T) {
	t.Parallel()
	sc := shortScenario()
	good := Summary{Final: true, Resets: 2}
	for _, tn := range sc.Tenants {
		good.Rows = append(good.Rows, Row{ID: tn.ID, Policy: tn.Policy, Plan: tn.Plan, Tasks: tn.Tasks,
			Processed: tn.Tasks, Rate: tn.Policy.Rate, Served: int64(tn.Tasks), QuotaLeft: -1})
	}
	tests := []struct {
		name   string
		change func(*Summary)
		want   string
	}{
		{"Good", func(*Summary) {}, ""},
		{"NotDone", func(s *Summary) { s.Rows[0].Processed--; s.TimedOut = true }, "acme: 59 of 60 tasks processed"},
		{"Upstream429", func(s *Summary) { s.Rows[1].Refused = 2 }, "globex: the upstream answered 429 Too Many Requests 2 times"},
		{"TooFast", func(s *Summary) { s.Rows[0].Rate = 30 }, "acme: ran at 30.0/s, above its policy's 20/s"},
		{"QuotaOverrun", func(s *Summary) { s.Resets = 1 }, "initech: 25 tasks ran with a quota of 10 and 1 resets (at most 20)"},
		{"NoReset", func(s *Summary) { s.Resets = 0; s.Rows[2].Processed = 10; s.Rows[2].Tasks = 10 }, "the scheduler never reset a quota"},
		{"Failed", func(s *Summary) { s.Failed = 3 }, "3 tasks failed"},
		{"Stopped", func(s *Summary) { s.Stopped = true }, "interrupted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := good
			s.Rows = append([]Row(nil), good.Rows...)
			tt.change(&s)
			got := strings.Join(s.Problems(), "\n")
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("problems %q, want %q", got, tt.want)
			}
			var out bytes.Buffer
			if code := summarize(&out, s); (code == 0) != (tt.want == "") {
				t.Errorf("summarize exit %d for problems %q", code, got)
			}
		})
	}
}
