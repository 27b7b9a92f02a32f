package enqueuecli

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"

	"github.com/quotaq/quotaq/internal/cmdline"
)

// fuzzSecret is the password of the fuzz target's Redis: it must never be
// printed.
const fuzzSecret = "fz-Hunter2-pw-99"

// FuzzArgs runs the whole command on any arguments and standard input (one
// argument per line of args), against a password-protected miniredis: it
// never panics; it exits 0, 1 or 2; exit 2 (bad usage or input) leaves
// Redis exactly as it was and says why in one line that points to --help;
// and nothing it prints shows the password.
//
// Arguments that would reach past the test's own Redis (connection and TLS
// flags, files other than stdin) or ask for more than 50 tasks are skipped.
func FuzzArgs(f *testing.F) {
	m := miniredis.NewMiniRedis()
	m.RequireAuth(fuzzSecret)
	if err := m.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(m.Close)
	redisURL := "redis://:" + fuzzSecret + "@" + m.Addr() + "/0"

	for _, s := range []struct{ args, stdin string }{
		{"--tenant\nacme\n--type\nemail:send\n--payload\n{\"to\":\"a@example.com\"}", ""},
		{"--tenant\nacme\n--type\nreport\n--count\n3\n--queue\nbulk", ""},
		{"--file\n-\n--type\nemail:send", "{\"tenant\":\"acme\"}\n{\"tenant\":\"globex\",\"payload\":{\"x\":1}}\n"},
		{"--file\n-", "{\"tenant\":\"acme\",\"type\":\"t\"}\nnot json\n"},
		{"--file\n-", "{\"tenant\":\"a\\u0000b\",\"type\":\"t\"}\n"},
		{"policy\nset\nacme\n--rate\n5\n--burst\n20\n--quota\n10000\n--quota-period\n24h", ""},
		{"policy\nset\nacme\n--rate\n-5", ""},
		{"policy\nset\n--default\n--rate\n1e-300\n--burst\n9223372036854775807", ""},
		{"policy\nshow\n{}:x", ""}, {"policy\ndelete\nacme", ""},
		{"standing\nacme", ""}, {"status\n--json", ""}, {"status\nacme\nglobex", ""},
		{"quota\nreset\nacme", ""}, {"quota\nreset\n--all", ""}, {"quota\nadjust\nacme\n--rate\n3", ""},
		{"--tenant\n\n--type\nx", ""}, {"--tenant\nacme\n--type\nx\n--in\n-1s", ""},
		{"--tenant\nacme\n--type\nx\n--at\nyesterday", ""}, {"--tenant\nacme\n--type\nx\n--max-retry\n-3", ""},
		{"--tenant\nacme\n--type\nx\n--unique\n1h\n--id\nsame", ""}, {"--help", ""}, {"bogus", ""},
		{"--tenant\nacme\n--type\nx\n--payload\n" + fuzzSecret, ""},
	} {
		f.Add(s.args, []byte(s.stdin))
	}
	f.Fuzz(func(t *testing.T, argLines string, stdin []byte) {
		args := strings.Split(argLines, "\n")
		if argLines == "" {
			args = nil
		}
		if len(stdin) > 8<<10 || skipArgs(args) {
			t.Skip("reaches past the test's Redis or asks for too much")
		}
		m.FlushAll()
		before := m.Dump()
		var stdout, stderr bytes.Buffer
		// miniredis has no CONFIG: its policy cannot be read, so say any will do
		env := cmdline.Env{"REDIS_URL": redisURL, "QUOTAQ_ALLOW_EVICTION": "1"}
		code := run(context.Background(), args, cmdIO{stdin: bytes.NewReader(stdin), stdout: &stdout, stderr: &stderr, env: env})
		out := stdout.String() + stderr.String()
		if strings.Contains(out, fuzzSecret) && !strings.Contains(argLines+string(stdin), fuzzSecret) {
			t.Fatalf("args %q: the output shows the password:\n%s", args, out)
		}
		switch code {
		case ExitOK, ExitFailure:
		case ExitUsage:
			if after := m.Dump(); after != before {
				t.Fatalf("args %q stdin %q: usage error %q, but Redis changed:\n%s", args, stdin, stderr.String(), after)
			}
			msg := stderr.String()
			if !strings.HasPrefix(msg, progName+": ") || !strings.HasSuffix(msg, "(see "+progName+" --help)\n") || strings.Count(msg, "\n") != 1 {
				t.Fatalf("args %q: usage error is not one line naming the program and --help: %q", args, msg)
			}
		default:
			t.Fatalf("args %q: exit code %d", args, code)
		}
	})
}

// skipArgs reports whether args could reach past the test's Redis (other
// servers, TLS files, input files) or enqueue more than 50 tasks.
func skipArgs(args []string) bool {
	counted := false
	for i, a := range args {
		l := strings.ToLower(a)
		for _, w := range []string{"redis", "sentinel", "cluster", "embedded", "tls", "timeout"} {
			if strings.Contains(l, w) {
				return true
			}
		}
		if strings.Contains(l, "file") {
			next := ""
			if i+1 < len(args) {
				next = args[i+1]
			}
			if !strings.HasSuffix(a, "file=-") && !((a == "--file" || a == "-file") && next == "-") {
				return true
			}
		}
		if strings.Contains(l, "count") || strings.Contains(l, "concurrency") {
			counted = true
		}
	}
	if !counted {
		return false
	}
	for _, a := range args {
		if i := strings.LastIndexByte(a, '='); i >= 0 {
			a = a[i+1:]
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(a), 0, 64); err == nil && n > 50 {
			return true
		}
		if strings.ContainsAny(a, "eE") && strings.ContainsAny(a, "0123456789") { // 1e9 and the like
			if _, err := strconv.ParseFloat(a, 64); err == nil {
				return true
			}
		}
	}
	return false
}
