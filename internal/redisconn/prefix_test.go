package redisconn

import (
	"flag"
	"strings"
	"testing"
)

// TestPrefixRule: the flag wins, then QUOTAQ_PREFIX, then the default; an
// empty value given either way is an error, never a silent fallback.
func TestPrefixRule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     []string
		want    string
		wantErr string
	}{
		{"Default", nil, nil, DefaultPrefix, ""},
		{"Env", nil, []string{"QUOTAQ_PREFIX", "tenants"}, "tenants", ""},
		{"EnvTrimmed", nil, []string{"QUOTAQ_PREFIX", " tenants "}, "tenants", ""},
		{"FlagWinsOverEnv", []string{"--prefix", "mine"}, []string{"QUOTAQ_PREFIX", "tenants"}, "mine", ""},
		{"EmptyEnv", nil, []string{"QUOTAQ_PREFIX", ""}, "", `QUOTAQ_PREFIX "" is empty`},
		{"BlankEnv", nil, []string{"QUOTAQ_PREFIX", " "}, "", `QUOTAQ_PREFIX " " is empty`},
		{"EmptyFlag", []string{"--prefix", ""}, nil, "", `--prefix "" is empty`},
		{"EmptyFlagDoesNotFallBackToEnv", []string{"--prefix="}, []string{"QUOTAQ_PREFIX", "tenants"}, "", `--prefix "" is empty`},
		{"OnlyBraces", nil, []string{"QUOTAQ_PREFIX", "{}"}, "", `QUOTAQ_PREFIX "{}" has a brace`},
		{"Brace", []string{"--prefix", "a{b"}, nil, "", `--prefix "a{b" has a brace`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var p Prefix
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.Var(&p, "prefix", PrefixUsage)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := p.Resolve(env(tt.env...))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Resolve = %q, %v; want an error saying %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Resolve = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
