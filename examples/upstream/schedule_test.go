package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/quotaq/quotaq/examples/internal/fakeapi"
	"github.com/quotaq/quotaq/scheduler"
)

// composePlans returns the plans docker-compose.yml gives this upstream:
// the --plans of particular API keys and the --plan of every other key.
func composePlans(t *testing.T) (byKey map[string]fakeapi.Plan, other fakeapi.Plan) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	var plans, plan string
	for _, arg := range compose.Services["upstream"].Command {
		if v, ok := strings.CutPrefix(arg, "--plans="); ok {
			plans = v
		}
		if v, ok := strings.CutPrefix(arg, "--plan="); ok {
			plan = v
		}
	}
	if plans == "" || plan == "" {
		t.Fatalf("docker-compose.yml's upstream service has no --plans= and --plan= in its command: %q", compose.Services["upstream"].Command)
	}
	if byKey, err = fakeapi.ParsePlans(plans); err != nil {
		t.Fatal(err)
	}
	if other, err = fakeapi.ParsePlan(plan); err != nil {
		t.Fatal(err)
	}
	return byKey, other
}

// The schedule docker-compose mounts is safe to copy: its adjust entries
// name their tenants (no `all: true` that rewrites every tenant's policy),
// and each sets a rate and a burst that keep the tenant under its plan at
// this upstream: burst + rate x window calls at most in any window.
func TestExampleScheduleStaysUnderThePlans(t *testing.T) {
	t.Parallel()
	byKey, other := composePlans(t)
	s, err := scheduler.LoadFile(filepath.Join("..", "schedule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	adjusts := 0
	for _, e := range s.Entries {
		a := e.Adjust
		if a == nil {
			continue
		}
		adjusts++
		if a.All {
			t.Errorf("entry %s: adjust with all: true gives every tenant the same policy; name the tenants", e.Name)
		}
		if a.Rate == nil || a.Burst == nil {
			t.Errorf("entry %s: sets no rate or no burst; an example sets both, so the bound below is known", e.Name)
			continue
		}
		for _, tenant := range a.Tenants {
			plan, ok := byKey[tenant]
			if !ok {
				plan = other
			}
			if most := float64(*a.Burst) + *a.Rate*plan.Per.Seconds(); most > float64(plan.N) {
				t.Errorf("entry %s: %s may start %.0f calls in %s (burst %d + rate %g/s), above its plan %s at the upstream",
					e.Name, tenant, most, plan.Per, *a.Burst, *a.Rate, plan)
			}
		}
	}
	if adjusts == 0 {
		t.Error("the example schedule has no adjust entry left to show")
	}
}
