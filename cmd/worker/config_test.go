package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigFileIsOverriddenByEnvironmentThenFlags: a setting comes from
// the config file, unless its variable is set, unless its flag is given;
// the Redis flags and --prefix, which read their own variables, too.
func TestConfigFileIsOverriddenByEnvironmentThenFlags(t *testing.T) {
	t.Parallel()
	file := writeFile(t, `# the worker's settings
concurrency: 5
queues:
  critical: 6
  default: 3
http-allow: [api.example.com, "*.example.org"]
redis-url: redis://from-file:6379/0
prefix: fromfile
max-wait: 1m
fail-open: true
metrics-addr: ""
`)
	fromEnv := map[string]string{"QUOTAQ_CONCURRENCY": "6", "REDIS_URL": "redis://from-env:6379/0", "QUOTAQ_PREFIX": "fromenv", "QUOTAQ_FAIL_OPEN": "false"}
	fromFlags := []string{"--concurrency", "7", "--redis-url", "redis://from-flag:6379/0", "--prefix", "fromflag", "--fail-open=true"}
	cases := []struct {
		name        string
		args        []string
		env         map[string]string
		concurrency int
		redis       string
		prefix      string
		failOpen    bool
	}{
		{"File", []string{"--config", file}, nil, 5, "redis://from-file:6379/0", "fromfile", true},
		{"FileNamedByTheEnvironment", nil, map[string]string{"QUOTAQ_CONFIG": file}, 5, "redis://from-file:6379/0", "fromfile", true},
		{"EnvironmentOverFile", []string{"--config", file}, fromEnv, 6, "redis://from-env:6379/0", "fromenv", false},
		{"FlagsOverEnvironment", append([]string{"--config", file}, fromFlags...), fromEnv, 7, "redis://from-flag:6379/0", "fromflag", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseFlags(tc.args, env(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if o.concurrency != tc.concurrency || o.redis.Addr() != tc.redis || o.prefix != tc.prefix || o.failOpen != tc.failOpen {
				t.Errorf("concurrency %d, redis %s, prefix %s, fail-open %v; want %d, %s, %s, %v",
					o.concurrency, o.redis.Addr(), o.prefix, o.failOpen, tc.concurrency, tc.redis, tc.prefix, tc.failOpen)
			}
			// the file's other keys, from YAML maps and lists
			if o.queues.String() != "critical=6,default=3" || o.httpAllow != "api.example.com,*.example.org" || o.maxWait != time.Minute || o.metricsAddr != "" {
				t.Errorf("queues %s, http-allow %q, max-wait %s, metrics-addr %q: not the file's", o.queues, o.httpAllow, o.maxWait, o.metricsAddr)
			}
		})
	}
}

// TestBadConfigFilesAreUsageErrors: a config file's mistakes stop the
// worker with exit 2 and one line naming the file, the line and the key.
func TestBadConfigFilesAreUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, text, want string
	}{
		{"MistypedKey", "concurrency: 4\nconcurency: 5\n", `line 2: unknown key "concurency" (did you mean concurrency?); the keys are the flags' names`},
		{"UnknownKey", "colour: red\n", `line 1: unknown key "colour"; the keys are the flags' names`},
		{"NestedConfig", "config: other.yaml\n", `line 1: unknown key "config"`},
		{"Version", "version: true\n", `line 1: unknown key "version"`},
		{"BadNumber", "log-level: info\nconcurrency: many\n", `line 2: concurrency "many": not a whole number`},
		{"BadDuration", "max-wait: 10\n", `line 1: max-wait "10": not a duration such as 1.5s, 2m or 1h`},
		{"BadQueues", "queues:\n  critical: 0\n", `line 1: queues "critical=0": queue "critical" has weight "0"`},
		{"KeySetTwice", "concurrency: 4\nlease: 1s\nconcurrency: 5\n", "line 3: concurrency is set again (first on line 1)"},
		{"NotAMapping", "- concurrency\n- 5\n", "line 1: give settings as key: value lines"},
		{"NestedValue", "queues:\n  critical: [6]\n", "line 2: queues: give a map of plain values"},
		{"NotYAML", "concurrency: [5\n", "yaml:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, tc.text)
			var stderr bytes.Buffer
			code := run(context.Background(), []string{"--config", path}, env(nil), io.Discard, &stderr)
			want := "quotaq-worker: --config " + path + ": " + tc.want
			if code != 2 || !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and one line starting %q", code, stderr.String(), want)
			}
		})
	}
	t.Run("MissingFile", func(t *testing.T) {
		t.Parallel()
		var stderr bytes.Buffer
		path := filepath.Join(t.TempDir(), "none.yaml")
		code := run(context.Background(), nil, env(map[string]string{"QUOTAQ_CONFIG": path}), io.Discard, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), "--config "+path+": open ") {
			t.Errorf("exit %d, stderr %q; want exit 2 naming the file", code, stderr.String())
		}
	})
	t.Run("EmptyFileSetsNothing", func(t *testing.T) {
		t.Parallel()
		o, err := parseFlags([]string{"--config", writeFile(t, "# nothing yet\n")}, env(nil), io.Discard)
		if err != nil || o.concurrency != 10 {
			t.Errorf("empty file: %v, concurrency %d; want the defaults", err, o.concurrency)
		}
	})
}

// TestEveryFlagHasOneVariable: the worker's own flags read QUOTAQ_<FLAG>;
// each shared flag (Redis, --prefix) names in its help the variable it reads,
// which is what lets that variable override a config file.
func TestEveryFlagHasOneVariable(t *testing.T) {
	t.Parallel()
	o := &options{queues: queueWeights{}}
	o.redis.AllowEmbedded = true
	fs, shared := o.flagSet()
	seen := map[string]string{}
	for name := range shared {
		f := fs.Lookup(name)
		v := envOf(f, shared)
		if v == "" {
			t.Errorf("--%s names no environment variable in its help", name)
		}
		if other, dup := seen[v]; dup {
			t.Errorf("--%s and --%s both read %s", name, other, v)
		}
		seen[v] = name
	}
	if envOf(fs.Lookup("version"), shared) != "" || envOf(fs.Lookup("max-wait"), shared) != "QUOTAQ_MAX_WAIT" {
		t.Error("--version must be for the command line only, --max-wait read QUOTAQ_MAX_WAIT")
	}
}
