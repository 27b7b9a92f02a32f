package cmdline

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestSuggestNamesOnlyCloseNames(t *testing.T) {
	t.Parallel()
	known := []string{"concurrency", "queues", "lease", "metrics-addr", "log-level"}
	cases := map[string]string{
		"concurency":  " (did you mean --concurrency?)",
		"Concurrency": " (did you mean --concurrency?)",
		"queue":       " (did you mean --queues?)",
		"leas":        " (did you mean --lease?)",
		"metrics":     "", // a word of its own, not a slip
		"colour":      "",
		"log-levle":   " (did you mean --log-level?)",
	}
	for name, want := range cases {
		if got := Suggest("--", name, known); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestExplainNamesTheFlagAndTheValue(t *testing.T) {
	t.Parallel()
	newSet := func() *flag.FlagSet {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		fs.Int("count", 1, "")
		fs.Float64("rate", 1, "")
		fs.Duration("wait", time.Second, "")
		fs.Bool("json", false, "")
		return fs
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--count", "x"}, `--count "x": not a whole number`},
		{[]string{"-count=99999999999999999999"}, `--count "99999999999999999999": out of range for a whole number`},
		{[]string{"--rate", "fast"}, `--rate "fast": not a number`},
		{[]string{"--wait", "5"}, `--wait "5": not a duration such as 1.5s, 2m or 1h`},
		{[]string{"--json=maybe"}, `--json "maybe": give true or false`},
		{[]string{"--cont", "3"}, "unknown flag --cont (did you mean --count?)"},
		{[]string{"--wait"}, "--wait needs a value (--wait=VALUE or --wait VALUE)"},
		{[]string{"---x"}, `bad flag syntax "---x": write flags as --name or --name=value`},
	}
	for _, tc := range cases {
		fs := newSet()
		if got := Explain(fs, fs.Parse(tc.args)); got == nil || got.Error() != tc.want {
			t.Errorf("%q: %v, want %s", tc.args, got, tc.want)
		}
	}
}

func TestWrapKeepsLinesWithinTheWidth(t *testing.T) {
	t.Parallel()
	text := strings.Repeat("word ", 60) + strings.Repeat("x", 100)
	out := Wrap(text, "        ")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for i, l := range lines[:len(lines)-1] { // the last is one long word
		if len(l) > helpWidth || !strings.HasPrefix(l, "        word") {
			t.Errorf("line %d %q: longer than %d or not indented", i, l, helpWidth)
		}
	}
	if strings.Join(strings.Fields(out), " ") != strings.Join(strings.Fields(text), " ") {
		t.Error("Wrap changed the words")
	}
}

func TestOneLineKeepsSpacesWithinALine(t *testing.T) {
	t.Parallel()
	if got := OneLine("QUOTAQ_PREFIX \"  \" is empty\n  give one\n"); got != `QUOTAQ_PREFIX "  " is empty give one` {
		t.Errorf("OneLine = %q", got)
	}
}
