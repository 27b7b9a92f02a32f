package redisconn

import (
	"fmt"
	"os"
	"strings"
)

// DefaultPrefix is the limiter's key prefix when neither --prefix nor
// QUOTAQ_PREFIX is given.
const DefaultPrefix = "quotaq"

// PrefixUsage is the help text of the --prefix flag.
const PrefixUsage = "key `prefix` of the limiter; workers and quotaq-enqueue must use the same (env QUOTAQ_PREFIX; default " + DefaultPrefix + ")"

// Prefix is the --prefix flag of quotaq's programs. Worker and CLI resolve it
// with the same rule, so they always use the same keys: the flag when given,
// else QUOTAQ_PREFIX when set, else DefaultPrefix; surrounding spaces are
// dropped, and an empty value, or one with a brace, given either way is an
// error.
type Prefix struct {
	value string
	set   bool
}

// String returns the value given on the command line.
func (p *Prefix) String() string {
	if p == nil {
		return ""
	}
	return p.value
}

// Set records the flag's value.
func (p *Prefix) Set(v string) error {
	p.value, p.set = v, true
	return nil
}

// Resolve returns the prefix to use. lookup reads the environment; nil means
// os.LookupEnv. An error is a usage error.
func (p *Prefix) Resolve(lookup func(string) (string, bool)) (string, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v, from := DefaultPrefix, ""
	if p.set {
		v, from = p.value, "--prefix"
	} else if e, ok := lookup("QUOTAQ_PREFIX"); ok {
		v, from = e, "QUOTAQ_PREFIX"
	}
	if strings.TrimSpace(v) == "" {
		return "", fmt.Errorf("%s %q is empty: give the limiter's key prefix, the same for workers and quotaq-enqueue, or leave it unset for the default %q", from, v, DefaultPrefix)
	}
	if strings.ContainsAny(v, "{}") {
		// the limiter would drop them (they mark Cluster hash tags), and
		// "{}" would become the empty prefix
		return "", fmt.Errorf("%s %q has a brace: the limiter's keys reserve { and } for Redis Cluster hash tags; give a prefix without them", from, v)
	}
	return strings.TrimSpace(v), nil
}
