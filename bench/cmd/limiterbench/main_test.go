package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// A tiny run of every limiter, under and over their limits: the harness
// works end to end and every limiter decides without errors. It measures
// nothing (benchmarks are run by hand, see BENCHMARKS.md).
func TestRunSmoke(t *testing.T) {
	var out bytes.Buffer
	cfg := config{d: 50 * time.Millisecond, warmup: 10 * time.Millisecond, callers: []int{2}, tenants: 10,
		modes: allModes, parts: []string{"under", "over"}, policies: 10, overTenants: 5, rounds: 1}
	if err := run(&out, cfg); err != nil {
		t.Fatal(err)
	}
	for _, m := range allModes {
		rows := 0
		for _, line := range strings.Split(out.String(), "\n") {
			if !strings.HasPrefix(line, "| "+m.name+" |") {
				continue
			}
			rows++
			cells := strings.Split(strings.Trim(line, "| "), " | ")
			if errs := cells[len(cells)-1]; errs != "0" {
				t.Errorf("%s: %s errors: %s", m.name, errs, line)
			}
		}
		if rows != 2 {
			t.Errorf("%s: %d rows, want 2 (under, over):\n%s", m.name, rows, out.String())
		}
	}
}

func TestParseInts(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []int
		bad  bool
	}{{"1,16, 64", []int{1, 16, 64}, false}, {"0", nil, true}, {"a", nil, true}, {"", nil, true}} {
		got, err := parseInts(tt.in)
		if (err != nil) != tt.bad || len(got) != len(tt.want) {
			t.Errorf("parseInts(%q) = %v, %v", tt.in, got, err)
		}
	}
}
