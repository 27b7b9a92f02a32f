package scheduler

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

func TestLoadFileExample(t *testing.T) {
	t.Parallel()
	s, err := LoadFile(filepath.Join("..", "examples", "schedule.yaml"))
	if err != nil {
		t.Fatalf("examples/schedule.yaml: %v", err)
	}
	byName := map[string]Entry{}
	for _, e := range s.Entries {
		byName[e.Name] = e
	}
	if len(byName) != 4 {
		t.Fatalf("got %d entries, want 4: %v", len(byName), byName)
	}
	if e := byName["monthly-reset-eu"]; e.Reset == nil || len(e.Reset.Tenants) != 2 || e.CatchUp != 24*time.Hour {
		t.Errorf("monthly-reset-eu = %+v", e)
	}
	if e := byName["acme-night"]; e.Adjust == nil || e.Adjust.All || len(e.Adjust.Tenants) != 1 || *e.Adjust.Rate != 20 || *e.Adjust.Burst != 1 || e.Adjust.Quota != nil {
		t.Errorf("acme-night = %+v", e)
	}
	if byName["daily-reset"].CatchUp != time.Hour {
		t.Errorf("daily-reset catch_up = %s, want the file's 1h", byName["daily-reset"].CatchUp)
	}
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	s, err := Parse("s.yaml", []byte(`
entries:
  - name: a
    cron: "0 0 * * *"
    action: reset
    tenant: t1
  - name: b
    cron: "0 0 * * *"
    action: adjust
    tenants: [t1, t2]
    quota: 0
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Location != time.UTC {
		t.Errorf("Location = %v, want UTC", s.Location)
	}
	a, b := s.Entries[0], s.Entries[1]
	if a.CatchUp != DefaultCatchUp {
		t.Errorf("a: catch_up %s, want the default", a.CatchUp)
	}
	if b.Adjust.Quota == nil || *b.Adjust.Quota != 0 || b.Adjust.Rate != nil {
		t.Errorf("b: quota %v rate %v, want quota 0 given and rate not", b.Adjust.Quota, b.Adjust.Rate)
	}
	// quota 0 drops the period too: a period without a quota is invalid.
	p := b.Adjust.Apply(throttle.Policy{Rate: 1, Burst: 1, Quota: 5, QuotaPeriod: time.Hour})
	if p.Quota != 0 || p.QuotaPeriod != 0 {
		t.Errorf("apply quota 0 = %+v, want no quota and no period", p)
	}
}

func TestParseAdjustConcurrency(t *testing.T) {
	t.Parallel()
	s, err := Parse("s.yaml", []byte(`
entries:
  - name: night
    cron: "0 22 * * *"
    action: adjust
    tenant: acme
    concurrency: 2
`))
	if err != nil {
		t.Fatal(err)
	}
	a := s.Entries[0].Adjust
	if a.Concurrency == nil || *a.Concurrency != 2 || a.Rate != nil {
		t.Fatalf("adjust = %+v, want concurrency 2 only", a)
	}
	if p := a.Apply(throttle.Policy{Rate: 1, Burst: 1, Concurrency: 5}); p != (throttle.Policy{Rate: 1, Burst: 1, Concurrency: 2}) {
		t.Errorf("apply = %+v, want the concurrency changed and the rest kept", p)
	}
}

// An entry as the validation cases start from; each case replaces or adds
// lines.
const okEntry = `
  - name: e1
    cron: "0 0 * * *"
    action: reset
    tenant: acme
`

// A file far larger than any schedule is refused before it is parsed.
func TestParseRefusesAHugeFile(t *testing.T) {
	t.Parallel()
	huge := []byte("entries:\n" + strings.Repeat("# padding\n", MaxFileSize/10+1))
	if _, err := Parse("huge.yaml", huge); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Parse of %d bytes: %v, want a size error", len(huge), err)
	}
	path := filepath.Join(t.TempDir(), "huge.yaml")
	if err := os.WriteFile(path, huge, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("LoadFile of %d bytes: %v, want a size error", len(huge), err)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		yaml  string
		entry string // the entry the error names
		field string
		want  string // in the message
		line  int    // 0: not checked
	}{
		{"BadCron", `
entries:
  - name: nightly
    cron: "0 0 * *"
    action: reset
    all: true
`, "nightly", "cron", "expected 5 to 6 fields", 4},
		{"CronOutOfRange", `
entries:
  - name: nightly
    cron: "0 25 * * *"
    action: reset
    all: true
`, "nightly", "cron", "above maximum", 4},
		{"CronNeverFires", `
entries:
  - name: feb30
    cron: "0 0 30 2 *"
    action: reset
    all: true
`, "feb30", "cron", "never fires", 4},
		{"BadZoneInCron", `
entries:
  - name: z
    cron: "CRON_TZ=Nowhere/Land 0 0 * * *"
    action: reset
    all: true
`, "z", "cron", "bad location", 4},
		{"UnknownAction", `
entries:
  - name: wipe
    cron: "0 0 * * *"
    action: delete
    all: true
`, "wipe", "action", `unknown action "delete"`, 5},
		{"MissingAction", `
entries:
  - name: e
    cron: "0 0 * * *"
    all: true
`, "e", "action", "missing", 0},
		{"NegativeRate", `
entries:
  - name: night
    cron: "0 22 * * *"
    action: adjust
    tenant: acme
    rate: -5
`, "night", "rate", "-5 must be a number from 1.1574074074074074e-06 to 1e+09", 7},
		{"ZeroRate", `
entries:
  - name: night
    cron: "0 22 * * *"
    action: adjust
    all: true
    rate: 0
`, "night", "rate", "0 must be a number from 1.1574074074074074e-06", 7},
		{"RateTooSmallForItsInterval", `
entries:
  - name: night
    cron: "0 22 * * *"
    action: adjust
    tenant: acme
    rate: 1e-12
`, "night", "rate", "1e-12 must be a number from 1.1574074074074074e-06 to 1e+09", 7},
		{"RateNotANumber", `
entries:
  - name: night
    cron: "0 22 * * *"
    action: adjust
    tenant: acme
    rate: fast
`, "night", "rate", "fast is not a number", 7},
		{"BurstZero", `
entries:
  - name: night
    cron: "0 22 * * *"
    action: adjust
    tenant: acme
    burst: 0
`, "night", "burst", "must be >= 1", 7},
		{"BurstFraction", `
entries:
  - name: night
    cron: "0 22 * * *"
    action: adjust
    tenant: acme
    burst: 1.5
`, "night", "burst", "not a whole number", 7},
		{"NegativeQuota", `
entries:
  - name: night
    cron: "0 22 * * *"
    action: adjust
    tenant: acme
    quota: -1
`, "night", "quota", "negative", 7},
		{"NegativeConcurrency", `
entries:
  - name: night
    cron: "0 22 * * *"
    action: adjust
    tenant: acme
    concurrency: -1
`, "night", "concurrency", "negative", 0},
		{"PeriodWithoutQuota", `
entries:
  - name: night
    cron: "0 22 * * *"
    action: adjust
    tenant: acme
    quota: 0
    quota_period: 24h
`, "night", "quota_period", "quota 0", 0},
		{"RefillTooSlow", `
entries:
  - name: night
    cron: "0 22 * * *"
    action: adjust
    tenant: acme
    rate: 0.00001
    burst: 1000
`, "night", "burst", "to refill", 0},
		{"NothingToAdjust", `
entries:
  - name: night
    cron: "0 22 * * *"
    action: adjust
    tenant: acme
`, "night", "rate", "nothing to adjust", 0},
		{"EmptyTenant", `
entries:
  - name: r
    cron: "0 0 * * *"
    action: reset
    tenant: ""
`, "r", "tenant", "empty", 6},
		{"ControlCharTenant", `
entries:
  - name: r
    cron: "0 0 * * *"
    action: reset
    tenants: [ok, "bad\tid"]
`, "r", "tenants", "control character", 6},
		{"LongTenant", `
entries:
  - name: r
    cron: "0 0 * * *"
    action: reset
    tenant: ` + strings.Repeat("x", 129) + `
`, "r", "tenant", "129 bytes", 6},
		{"TenantTwice", `
entries:
  - name: r
    cron: "0 0 * * *"
    action: reset
    tenants: [a, a]
`, "r", "tenants", "listed twice", 6},
		{"NoTarget", `
entries:
  - name: r
    cron: "0 0 * * *"
    action: reset
`, "r", "tenants", "no tenants", 0},
		{"AllAndTenants", `
entries:
  - name: r
    cron: "0 0 * * *"
    action: reset
    all: true
    tenants: [a]
`, "r", "all", "not both", 6},
		{"TenantAndTenants", `
entries:
  - name: r
    cron: "0 0 * * *"
    action: reset
    tenant: a
    tenants: [b]
`, "r", "tenants", "not both", 7},
		{"FieldOfAnotherAction", `
entries:
  - name: r
    cron: "0 0 * * *"
    action: reset
    all: true
    rate: 5
`, "r", "rate", "does not apply to action reset", 7},
		{"UnknownField", `
entries:
  - name: r
    cron: "0 0 * * *"
    action: reset
    all: true
    tenent: a
`, "r", "tenent", "unknown field", 7},
		{"UnknownTopLevelField", `
timezone: UTC
entry:
  - name: r
`, "", "entry", "unknown field", 3},
		{"UnknownTimezone", `
timezone: Mars/Olympus
entries:` + okEntry, "", "timezone", "unknown time zone", 2},
		{"NegativeCatchUp", `
catch_up: -1h
entries:` + okEntry, "", "catch_up", "negative", 2},
		{"CatchUpOfAYear", `
catch_up: 8760h
entries:` + okEntry, "", "catch_up", "longer than 744h", 2},
		{"EntryCatchUpOfAYear", `
entries:
  - name: r
    cron: "0 0 * * *"
    action: reset
    all: true
    catch_up: 8760h
`, "r", "catch_up", "longer than 744h", 7},
		{"EntryCatchUpNotADuration", `
entries:
  - name: r
    cron: "0 0 * * *"
    action: reset
    all: true
    catch_up: soon
`, "r", "catch_up", "not a duration", 7},
		{"DuplicateName", `
entries:` + okEntry + okEntry, "e1", "name", "used twice (first at line 3)", 8},
		{"BadName", `
entries:
  - name: "night shift"
    cron: "0 0 * * *"
    action: reset
    all: true
`, "#1", "name", "letters, digits", 3},
		{"MissingName", `
entries:
  - cron: "0 0 * * *"
    action: reset
    all: true
`, "#1", "name", "missing", 0},
		{"MissingCron", `
entries:
  - name: r
    action: reset
    all: true
`, "r", "cron", "missing", 0},
		{"FieldTwice", `
entries:
  - name: r
    cron: "0 0 * * *"
    cron: "0 1 * * *"
    action: reset
    all: true
`, "r", "cron", "given twice", 5},
		{"NoValue", `
entries:
  - name: r
    cron:
    action: reset
    all: true
`, "r", "cron", "has no value", 0},
		{"AdaptiveRetired", `
entries:
  - name: ad
    cron: "*/30 * * * * *"
    action: adaptive
    tenant: t
    min_rate: 1
    max_rate: 10
    step: 1
`, "ad", "action", "learns an upstream's rate from its 429s", 5},
		{"EntryNotAMapping", `
entries:
  - just a string
`, "#1", "(entry)", "must be a mapping", 3},
		{"EntriesNotAList", `
entries: {name: r}
`, "", "entries", "must be a list", 2},
		{"NoEntries", `
timezone: UTC
`, "", "entries", "no entries", 0},
		{"EmptyFile", ``, "", "entries", "empty", 0},
		{"NotYAML", "entries: [\n", "", "(file)", "not valid YAML", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Parse("sched.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse = %+v, nil error; want an error on entry %q field %q", s, tt.entry, tt.field)
			}
			if s != nil {
				t.Errorf("Parse returned a schedule with its error: %+v", s)
			}
			if !errors.Is(err, ErrBadField) {
				t.Errorf("errors.Is(err, ErrBadField) = false for %v", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if fe.File != "sched.yaml" || fe.Entry != tt.entry || fe.Field != tt.field {
				t.Errorf("error names file %q entry %q field %q, want sched.yaml, %q, %q (%v)", fe.File, fe.Entry, fe.Field, tt.entry, tt.field, err)
			}
			if tt.line != 0 && fe.Line != tt.line {
				t.Errorf("error at line %d, want %d (%v)", fe.Line, tt.line, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not contain %q", msg, tt.want)
			}
			if !strings.HasPrefix(msg, "scheduler: sched.yaml") {
				t.Errorf("error %q does not start with the package and the file", msg)
			}
			if tt.entry != "" && !strings.Contains(msg, `entry "`+tt.entry+`"`) {
				t.Errorf("error %q does not name entry %q", msg, tt.entry)
			}
		})
	}
}

// A file with several mistakes reports them all, and a bad tenant id can be
// matched with the throttle's sentinel.
func TestParseReportsEveryError(t *testing.T) {
	t.Parallel()
	_, err := Parse("s.yaml", []byte(`
entries:
  - name: a
    cron: "nope"
    action: reset
    all: true
  - name: b
    cron: "0 0 * * *"
    action: adjust
    tenant: acme
    rate: -1
  - name: c
    cron: "0 0 * * *"
    action: reset
    tenant: "x\u0001"
`))
	if err == nil {
		t.Fatal("Parse: nil error")
	}
	msg := err.Error()
	for _, want := range []string{`entry "a": cron`, `entry "b": rate`, `entry "c": tenant`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not report %q:\n%s", want, msg)
		}
	}
	if !errors.Is(err, throttle.ErrInvalidTenant) {
		t.Errorf("errors.Is(err, throttle.ErrInvalidTenant) = false:\n%s", msg)
	}
}

func TestLoadFileMissing(t *testing.T) {
	t.Parallel()
	_, err := LoadFile(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "scheduler: ") {
		t.Errorf("LoadFile(missing) = %v, want a scheduler error wrapping os.ErrNotExist", err)
	}
}
