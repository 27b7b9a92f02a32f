package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestParseTables(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, out string
		want      []table
	}{
		{"a table without a heading, keyed by its first column", `redis-server 7.0.15, 2000 calls

| script | µs per call |
|---|---:|
| trivial: return 1 | 0.7 |
| lean | 4.8 |
`, []table{{title: "", cols: []string{"script", "µs per call"}, keys: 1,
			rows: [][]string{{"trivial: return 1", "0.7"}, {"lean", "4.8"}}}}},
		{"two tables with one header, told apart by their headings; callers names a row", `### Tenants under their limits (every decision admits): 10 tenants
| limiter | callers | decisions/s |
|---|---:|---:|
| quotaq | 1 | 100 |

### Tenants over their limits: 5 tenants
| limiter | callers | decisions/s |
|---|---:|---:|
| quotaq | 1 | 90 |
| short row | 1 |
`, []table{
			{title: "Tenants under their limits", cols: []string{"limiter", "callers", "decisions/s"}, keys: 2,
				rows: [][]string{{"quotaq", "1", "100"}}},
			{title: "Tenants over their limits", cols: []string{"limiter", "callers", "decisions/s"}, keys: 2,
				rows: [][]string{{"quotaq", "1", "90"}}},
		}},
		{"text between lines ends a table", `| a | b |
|---|---|
| x | 1 |
a line
| c | d |
`, []table{{cols: []string{"a", "b"}, keys: 1, rows: [][]string{{"x", "1"}}}, {cols: []string{"c", "d"}, keys: 1}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := parseTables(tt.out)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d tables, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, g := range got {
				w := tt.want[i]
				if g.title != w.title || !slices.Equal(g.cols, w.cols) || g.keys != w.keys ||
					!slices.EqualFunc(g.rows, w.rows, slices.Equal) {
					t.Errorf("table %d:\n got %+v\nwant %+v", i, g, w)
				}
			}
		})
	}
}

func TestNumber(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want float64
		ok   bool
	}{{"25.4", 25.4, true}, {"<1", 1, true}, {"152 (1 key: 152)", 152, true}, {"-", 0, false}, {"quotaq", 0, false}, {"NaN", 0, false}} {
		if got, ok := number(tt.in); ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("number(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// scriptRun is a scriptcost-like output with one figure per row.
func scriptRun(rows ...string) string {
	out := "| script | µs per call |\n|---|---:|\n"
	for _, r := range rows {
		out += "| " + strings.ReplaceAll(r, "=", " | ") + " |\n"
	}
	return out
}

func TestCompare(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name          string
		before, after []string // one output per run
		rename        map[string]string
		columns       []string
		want          []string // lines the comparison must have
		cells, marked int
	}{
		{
			name:   "Within the spread is not worse",
			before: []string{scriptRun("lean=4.0"), scriptRun("lean=6.0")},
			after:  []string{scriptRun("lean=5.0"), scriptRun("lean=6.5")},
			want:   []string{"| lean | µs per call | 5.00 (4.00–6.00) | 5.75 (5.00–6.50) | 1.15 |  |"},
			cells:  1,
		},
		{
			name:   "Worse by more than the larger spread is marked",
			before: []string{scriptRun("lean=4.0"), scriptRun("lean=4.2")},
			after:  []string{scriptRun("lean=5.0"), scriptRun("lean=5.4")},
			want:   []string{"| lean | µs per call | 4.10 (4.00–4.20) | 5.20 (5.00–5.40) | 1.27 | **worse** |"},
			cells:  1, marked: 1,
		},
		{
			name:   "A figure printed to fewer digits on one side is compared at those digits",
			before: []string{limiterRun("0.00"), limiterRun("0.00")},
			after:  []string{limiterRun("0.000245"), limiterRun("2.5e-04")},
			want:   []string{"| q | 16 | scripts/decision | 0 | 0.000247 (0.000245–0.00025) | - |  |"},
			cells:  1,
		},
		{
			name:   "A figure past the coarser side's digits is marked",
			before: []string{limiterRun("0.00"), limiterRun("0.00")},
			after:  []string{limiterRun("0.02"), limiterRun("0.02")},
			want:   []string{"| q | 16 | scripts/decision | 0 | 0.02 | - | **worse** |"},
			cells:  1, marked: 1,
		},
		{
			name:   "A rate that falls is worse, one that rises is not",
			before: []string{"| limiter | callers | decisions/s | admitted/s |\n|---|---:|---:|---:|\n| q | 1 | 100 | 100 |\n| q | 16 | 100 | 10 |\n"},
			after:  []string{"| limiter | callers | decisions/s | admitted/s |\n|---|---:|---:|---:|\n| q | 1 | 200 | 200 |\n| q | 16 | 50 | 5 |\n"},
			want: []string{
				"| q | 1 | decisions/s | 100 | 200 | 2.00 |  |",
				"| q | 16 | decisions/s | 100 | 50.0 | 0.50 | **worse** |",
				"| q | 16 | admitted/s | 10.0 | 5.00 | 0.50 |  |",
			},
			cells: 4, marked: 1,
		},
		{
			name:    "Only the columns asked for are shown",
			before:  []string{"| limiter | callers | decisions/s | p50 µs |\n|---|---:|---:|---:|\n| q | 1 | 100 | 50 |\n"},
			after:   []string{"| limiter | callers | decisions/s | p50 µs |\n|---|---:|---:|---:|\n| q | 1 | 100 | 90 |\n"},
			columns: []string{"decisions/s"},
			want:    []string{"| q | 1 | decisions/s | 100 | 100 | 1.00 |  |"},
			cells:   1,
		},
		{
			name:   "Renamed rows match; the rest are listed under their side",
			before: []string{scriptRun("lean.lua, one decision=4.0", "gone=1")},
			after:  []string{scriptRun("one decision=4.0", "new=2")},
			rename: map[string]string{"lean.lua, one decision": "one decision"},
			want: []string{
				"| one decision | µs per call | 4.00 | 4.00 | 1.00 |  |",
				"Rows only before has: `gone`",
				"Rows only after has: `new`",
			},
			cells: 1,
		},
		{
			name:   "A run without a number leaves the figure out",
			before: []string{scriptRun("lean=-"), scriptRun("lean=4")},
			after:  []string{scriptRun("lean=4"), scriptRun("lean=4")},
			want:   []string{"| script | figure |"},
		},
		{
			name:   "A table only one side prints is named",
			before: []string{scriptRun("lean=4")},
			after:  []string{scriptRun("lean=4") + "\n### Memory per idle tenant (10 tenants)\n| policy | bytes |\n|---|---:|\n| default | 152 |\n"},
			want:   []string{"### Memory per idle tenant\n\nOnly after has this table."},
			cells:  1,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before, after := newSide(), newSide()
			for _, out := range tt.before {
				if err := before.add(out, tt.rename); err != nil {
					t.Fatal(err)
				}
			}
			for _, out := range tt.after {
				if err := after.add(out, tt.rename); err != nil {
					t.Fatal(err)
				}
			}
			var w bytes.Buffer
			cells, marked := compare(&w, before, after, tt.columns)
			for _, line := range tt.want {
				if !strings.Contains(w.String(), line) {
					t.Errorf("missing %q in:\n%s", line, w.String())
				}
			}
			if cells != tt.cells || marked != tt.marked {
				t.Errorf("%d figures, %d marked; want %d, %d:\n%s", cells, marked, tt.cells, tt.marked, w.String())
			}
		})
	}
}

func TestAddRefusesOutputWithoutATable(t *testing.T) {
	t.Parallel()
	if err := newSide().add("redis-server 7.0.15\nno figures\n", nil); err == nil {
		t.Error("add accepted output without a table")
	}
}

func TestCheckRefusesFlagsItSets(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cmd    string
		rounds int
		args   []string
		ok     bool
	}{
		{"scriptcost", 3, []string{"-calls", "2000"}, true},
		{"limiterbench", 1, []string{"-parts", "under", "-duration=2s"}, true},
		{"asynqbench", 3, nil, false},
		{"scriptcost", 0, nil, false},
		{"scriptcost", 3, []string{"-addr", "localhost:6379"}, false},
		{"scriptcost", 3, []string{"--rounds=2"}, false},
		{"scriptcost", 3, []string{"-lua", "x"}, false},
	} {
		if err := check(config{cmd: tt.cmd, rounds: tt.rounds, args: tt.args}); (err == nil) != tt.ok {
			t.Errorf("check(%s, %d, %q) = %v", tt.cmd, tt.rounds, tt.args, err)
		}
	}
}

// limiterRun is a limiterbench output with one scripts/decision figure.
func limiterRun(scripts string) string {
	return "| limiter | callers | scripts/decision |\n|---|---:|---:|\n| q | 16 | " + scripts + " |\n"
}
