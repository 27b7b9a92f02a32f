package enqueuecli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/shadowrec"
	"github.com/quotaq/quotaq/throttle"
)

// standing and status say when workers run in shadow mode, and how many of
// each tenant's tasks would have been throttled; without such workers they
// say nothing of it.
func TestStandingAndStatusShowShadowMode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	if err := f.limiter().SetPolicy(ctx, "acme", throttle.Policy{Rate: 1, Burst: 5}); err != nil {
		t.Fatal(err)
	}
	record := func(ttl time.Duration, counts map[string]int64) {
		t.Helper()
		if _, err := shadowrec.Write(ctx, f.rdb, f.prefix, shadowrec.Record{Worker: "w1", TTL: ttl, Keep: time.Hour, MaxTenants: 10, Throttled: counts}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name   string
		before func()
		args   []string
		want   []string // in the output
		absent string
	}{
		{"NoShadowNoLine", func() {}, []string{"standing", "acme"}, []string{"tenant"}, "shadow"},
		{"StandingSaysDecisionsAreNotEnforced", func() { record(time.Minute, map[string]int64{"acme": 25}) }, []string{"standing", "acme"},
			[]string{"shadow     1 worker in shadow mode: decisions are counted, not enforced; 25 of its tasks ran that would have been throttled (counted since "}, ""},
		{"StandingJSON", func() {}, []string{"standing", "acme", "--json"}, []string{`"shadow":{"workers":1,"would_throttle":25,"since":"`}, ""},
		{"StatusTable", func() {}, []string{"status"},
			[]string{"shadow mode: 1 worker counts what it would throttle and runs every task (decisions are not enforced)", "ARCHIVED  WOULD THROTTLE\n", "  25\n"}, ""},
		{"StoppedWorkersLeaveTheirCounts", func() { record(0, nil) }, []string{"standing", "acme"},
			[]string{"shadow     no worker runs in shadow mode now; while some did, 25 of its tasks ran that would have been throttled"}, ""},
	}
	for _, s := range steps {
		s.before()
		code, out, errOut := f.run("", append(s.args, "--queues", f.queue)...)
		if code != ExitOK {
			t.Fatalf("%s: exit %d, %s", s.name, code, errOut)
		}
		for _, w := range s.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", s.name, w, out)
			}
		}
		if s.absent != "" && strings.Contains(out, s.absent) {
			t.Errorf("%s: output has %q:\n%s", s.name, s.absent, out)
		}
	}
}
