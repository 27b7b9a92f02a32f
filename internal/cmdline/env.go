package cmdline

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

// Env is a program's environment: the process's in main (OSEnv), a map in
// tests.
type Env map[string]string

// OSEnv is the process's environment.
func OSEnv() Env {
	e := Env{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		e[k] = v
	}
	return e
}

// Lookup is os.LookupEnv on e.
func (e Env) Lookup(key string) (string, bool) {
	v, ok := e[key]
	return v, ok
}

// EnvName is the variable of a program's own flag: QUOTAQ_ and the name in
// capitals, dashes as underscores (--max-wait: QUOTAQ_MAX_WAIT).
func EnvName(flagName string) string {
	return "QUOTAQ_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// envInUsage finds the variable a flag's help names ("(env REDIS_URL; ...").
var envInUsage = regexp.MustCompile(`\benv ([A-Z][A-Z0-9_]*)`)

// UsageEnv returns the environment variable f's help names, or "".
// The Redis flags and --prefix read their variables themselves
// (internal/redisconn) and document them so.
func UsageEnv(f *flag.Flag) string {
	if m := envInUsage.FindStringSubmatch(f.Usage); m != nil {
		return m[1]
	}
	return ""
}

// testEnvPrefix marks the variables of quotaq's own test suite.
const testEnvPrefix = "QUOTAQ_E2E_"

// UnknownEnv returns a warning for each QUOTAQ_* variable of env that is not
// in known, sorted, with the known one meant when it looks mistyped:
// "QUOTAQ_CONCURENCY is not a setting of quotaq-worker (did you mean
// QUOTAQ_CONCURRENCY?); it is ignored". With nearOnly, only mistyped ones
// are reported: a program that reads a few of the variables (quotaq-enqueue)
// leaves the others to the program that reads them.
func UnknownEnv(prog string, env Env, known []string, nearOnly bool) []string {
	isKnown := map[string]bool{}
	var suffixes []string // compared without QUOTAQ_, which all share
	for _, k := range known {
		isKnown[k] = true
		if s, ok := strings.CutPrefix(k, "QUOTAQ_"); ok {
			suffixes = append(suffixes, s)
		}
	}
	var warnings []string
	for key := range env {
		if !strings.HasPrefix(key, "QUOTAQ_") || isKnown[key] || strings.HasPrefix(key, testEnvPrefix) {
			continue
		}
		hint := Suggest("QUOTAQ_", strings.TrimPrefix(key, "QUOTAQ_"), suffixes)
		if hint == "" && nearOnly {
			continue
		}
		warnings = append(warnings, fmt.Sprintf("%s is not a setting of %s%s; it is ignored", key, prog, hint))
	}
	sort.Strings(warnings)
	return warnings
}
