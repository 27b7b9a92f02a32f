package main

import (
	"strings"
	"testing"
)

// A small run answers every query (a smoke test: it measures nothing).
func TestRunSmall(t *testing.T) {
	var out strings.Builder
	if err := run([]string{"--tenants", "300", "--with-tasks", "10", "--held", "3", "--requests", "2"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, q := range queries {
		if !strings.Contains(out.String(), "| "+q.name+" |") {
			t.Errorf("no line for %q:\n%s", q.name, out.String())
		}
	}
}
