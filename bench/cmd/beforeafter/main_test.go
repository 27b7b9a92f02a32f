package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

// Both sides are built from source (one exported from git, one the working
// tree), run on one server and compared: a smoke test, it measures nothing.
func TestRunComparesTwoVersions(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	cfg := config{before: "HEAD", after: "worktree", cmd: "scriptcost", rounds: 1, rename: oldNames,
		args: []string{"-calls", "20"}}
	if err := run(context.Background(), &out, cfg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"cd bench && go run ./cmd/beforeafter ",
		"| quotaq, one decision, default policy, active tenant | µs per call (INFO commandstats) | ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Rows only") {
		t.Errorf("a row is missing on one side:\n%s", out.String())
	}
}

func TestRunRefusesAnUnknownRevision(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), &out, config{before: "no-such-revision", after: "worktree", cmd: "scriptcost", rounds: 1})
	if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), `"no-such-revision"`) {
		t.Errorf("run = %v, want a usage error naming the revision", err)
	}
	if out.Len() > 0 {
		t.Errorf("wrote %q", out.String())
	}
}
