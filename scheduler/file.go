package scheduler

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"
)

// DefaultCatchUp is how far back a starting scheduler looks for a missed
// firing of an entry when neither the entry nor the file sets catch_up.
const DefaultCatchUp = time.Hour

// Bounds of a schedule file: a larger file, or a longer catch_up (each
// firing's task is kept that long, so that a late replica cannot run it
// again), is refused.
const (
	MaxFileSize = 1 << 20
	MaxCatchUp  = 31 * 24 * time.Hour
)

// Actions an entry can take.
const (
	ActionReset  = "reset"  // start a new quota period (TypeQuotaReset)
	ActionAdjust = "adjust" // set rate, burst, quota (TypeQuotaAdjust)
)

// errAdaptiveRetired is what an "adaptive" entry (or an adaptive adjust
// task of an older version) gets: the rate is learned from the upstream's
// refusals by the limiter itself, continuously, not by cron steps; two
// mechanisms would fight over the same rate.
var errAdaptiveRetired = errors.New(`the "adaptive" action is retired: quotaq-worker learns an upstream's rate from its 429s by itself, ` +
	`cutting it at each refusal and climbing back to the policy (--learn-factor, --learn-floor, --learn-recovery; README "Upstream says stop"); ` +
	`remove the entry, and set the ceiling with the policy's rate (or an "adjust" entry)`)

// Schedule is a parsed and validated schedule file.
type Schedule struct {
	// Location is the zone of the cron specs that have no CRON_TZ= of
	// their own: the file's timezone field, UTC when it has none.
	Location *time.Location
	Entries  []Entry
}

// Entry is one named, scheduled action.
type Entry struct {
	Name     string        // unique in its file; part of the task IDs
	Spec     string        // the cron spec as written
	Schedule cron.Schedule // parsed Spec; Next is pure
	Action   string        // ActionReset or ActionAdjust
	// CatchUp is how far back a starting scheduler looks for a firing it
	// missed; 0 means it never fires a missed one.
	CatchUp time.Duration

	Reset  *Reset  // set when Action is ActionReset
	Adjust *Adjust // set when Action is ActionAdjust
}

// Task returns the task of the entry's firing at its scheduled time fire,
// with the task ID TaskID(e.Name, fire) and opts.
func (e Entry) Task(fire time.Time, opts ...asynq.Option) (*asynq.Task, error) {
	opts = append([]asynq.Option{asynq.TaskID(TaskID(e.Name, fire))}, opts...)
	switch {
	case e.Reset != nil:
		r := *e.Reset
		r.Entry, r.FireTime = e.Name, fire.UTC()
		if next := e.Schedule.Next(fire); !next.IsZero() {
			r.NextReset = next.UTC()
		}
		return NewResetTask(r, opts...)
	case e.Adjust != nil:
		a := *e.Adjust
		a.Entry, a.FireTime = e.Name, fire.UTC()
		return NewAdjustTask(a, opts...)
	}
	return nil, fmt.Errorf("scheduler: entry %q has no action", e.Name)
}

// LoadFile reads and validates the schedule file at path; see Parse.
func LoadFile(path string) (*Schedule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("scheduler: read schedule file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("scheduler: read schedule file: %w", err)
	}
	return Parse(path, b)
}

// Parse reads a schedule file's contents; file names it in errors. Unknown
// fields are errors. Every problem found is reported, each as a *FieldError
// naming the entry, the field and its line (errors.As finds the first; the
// message lists them all).
//
// The format:
//
//	timezone: Europe/Berlin   # zone of specs without CRON_TZ=; default UTC
//	catch_up: 1h              # default for the entries; default 1h
//	entries:
//	  - name: nightly-reset   # letters, digits, . _ -; unique
//	    cron: "0 0 * * *"     # 5 fields, or 6 with seconds first; CRON_TZ=Zone, @daily, @every 10m
//	    action: reset         # reset | adjust
//	    all: true             # or tenant: id, or tenants: [a, b]
//	  - name: acme-night
//	    cron: "0 22 * * *"
//	    action: adjust
//	    tenant: acme
//	    rate: 50              # any of rate, burst, quota, quota_period (24h), concurrency
//	    catch_up: 0s          # per entry
func Parse(file string, data []byte) (*Schedule, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("scheduler: %s: larger than %d bytes: a schedule is a short list of entries; split it or remove what is not a schedule", file, MaxFileSize)
	}
	p := &fileParser{file: file}
	s := p.parse(data)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return s, nil
}

type fileParser struct {
	file string
	errs []error
}

func (p *fileParser) fail(entry string, line int, field string, err error) {
	var fe *FieldError
	if errors.As(err, &fe) {
		// A Validate error: it knows what is wrong, and the field unless
		// the caller knows better.
		if field == "" {
			field = fe.Field
		}
		err = fe.Err
	}
	p.errs = append(p.errs, &FieldError{File: p.file, Entry: entry, Line: line, Field: field, Err: err})
}

var entryName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// rawEntry is an entry as written; nil pointers were not given.
type rawEntry struct {
	Name     *string   `yaml:"name"`
	Cron     *string   `yaml:"cron"`
	Action   *string   `yaml:"action"`
	CatchUp  *string   `yaml:"catch_up"`
	Tenant   *string   `yaml:"tenant"`
	Tenants  *[]string `yaml:"tenants"`
	All      *bool     `yaml:"all"`
	Rate     *float64  `yaml:"rate"`
	Burst    *int64    `yaml:"burst"`
	Quota    *int64    `yaml:"quota"`
	Period   *string   `yaml:"quota_period"`
	Conc     *int64    `yaml:"concurrency"`
	MinRate  *float64  `yaml:"min_rate"`
	MaxRate  *float64  `yaml:"max_rate"`
	Step     *float64  `yaml:"step"`
	Factor   *float64  `yaml:"factor"`
	lines    map[string]int
	line     int
	position int
}

// lineOf returns the line of the first of fields given, or of the entry.
func (r *rawEntry) lineOf(fields ...string) int {
	for _, f := range fields {
		if l, ok := r.lines[f]; ok {
			return l
		}
	}
	return r.line
}

// fieldsFor says which fields an action takes besides name, cron, action
// and catch_up.
var fieldsFor = map[string][]string{
	ActionReset:  {"tenant", "tenants", "all"},
	ActionAdjust: {"tenant", "tenants", "all", "rate", "burst", "quota", "quota_period", "concurrency"},
}

func (p *fileParser) parse(data []byte) *Schedule {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.fail("", 0, "(file)", fmt.Errorf("not valid YAML: %v", err))
		return nil
	}
	if len(doc.Content) == 0 {
		p.fail("", 0, "entries", errors.New("the file is empty; list entries under \"entries:\""))
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.fail("", root.Line, "(file)", errors.New("the top level must be a mapping with timezone, catch_up and entries"))
		return nil
	}
	var (
		tz, catchUp *string
		entries     *yaml.Node
		lines       = map[string]int{}
	)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if _, dup := lines[k.Value]; dup {
			p.fail("", k.Line, k.Value, errors.New("given twice"))
			continue
		}
		lines[k.Value] = k.Line
		switch k.Value {
		case "timezone":
			p.decode("", k.Value, v, &tz)
		case "catch_up":
			p.decode("", k.Value, v, &catchUp)
		case "entries":
			entries = v
		default:
			p.fail("", k.Line, k.Value, errors.New("unknown field (the top level takes timezone, catch_up, entries)"))
		}
	}
	s := &Schedule{Location: time.UTC}
	if tz != nil {
		loc, err := time.LoadLocation(*tz)
		if err != nil || *tz == "" || *tz == "Local" {
			p.fail("", lines["timezone"], "timezone", fmt.Errorf("unknown time zone %q (use an IANA name such as UTC or Europe/Berlin)", *tz))
		} else {
			s.Location = loc
		}
	}
	defCatchUp := DefaultCatchUp
	if catchUp != nil {
		if d, err := parseCatchUp(*catchUp); err != nil {
			p.fail("", lines["catch_up"], "catch_up", err)
		} else {
			defCatchUp = d
		}
	}
	if entries == nil || (entries.Kind == yaml.SequenceNode && len(entries.Content) == 0) {
		p.fail("", root.Line, "entries", errors.New("no entries; a schedule needs at least one"))
		return s
	}
	if entries.Kind != yaml.SequenceNode {
		p.fail("", entries.Line, "entries", errors.New("must be a list of entries (\"- name: ...\")"))
		return s
	}
	names := map[string]int{} // entry name -> line
	for i, n := range entries.Content {
		raw := p.readEntry(i, n)
		if raw == nil {
			continue
		}
		e, ok := p.entry(raw, s.Location, defCatchUp)
		if !ok {
			continue
		}
		if l, dup := names[e.Name]; dup {
			p.fail(e.Name, raw.lines["name"], "name", fmt.Errorf("used twice (first at line %d); names must be unique, they make the task IDs", l))
			continue
		}
		names[e.Name] = raw.lines["name"]
		s.Entries = append(s.Entries, e)
	}
	return s
}

// readEntry reads the fields of entry number i (0-based), checking that
// each is known and of the right type.
func (p *fileParser) readEntry(i int, n *yaml.Node) *rawEntry {
	label := fmt.Sprintf("#%d", i+1)
	if n.Kind != yaml.MappingNode {
		p.fail(label, n.Line, "(entry)", errors.New("must be a mapping with name, cron, action, ..."))
		return nil
	}
	raw := &rawEntry{lines: map[string]int{}, line: n.Line, position: i + 1}
	// The name first, so that the other errors can name the entry.
	for j := 0; j+1 < len(n.Content); j += 2 {
		if n.Content[j].Value == "name" && n.Content[j+1].Kind == yaml.ScalarNode {
			label = n.Content[j+1].Value
		}
	}
	dst := map[string]any{}
	rv := reflect.ValueOf(raw).Elem()
	for f := 0; f < rv.NumField(); f++ {
		if tag := rv.Type().Field(f).Tag.Get("yaml"); tag != "" {
			dst[tag] = rv.Field(f).Addr().Interface()
		}
	}
	ok := true
	for j := 0; j+1 < len(n.Content); j += 2 {
		k, v := n.Content[j], n.Content[j+1]
		if _, dup := raw.lines[k.Value]; dup {
			p.fail(label, k.Line, k.Value, errors.New("given twice"))
			ok = false
			continue
		}
		raw.lines[k.Value] = k.Line
		d, known := dst[k.Value]
		if !known {
			p.fail(label, k.Line, k.Value, fmt.Errorf("unknown field (an entry takes %s)", strings.Join(knownEntryFields(), ", ")))
			ok = false
			continue
		}
		if !p.decode(label, k.Value, v, d) {
			ok = false
		}
	}
	if !ok {
		return nil
	}
	return raw
}

func knownEntryFields() []string {
	var out []string
	t := reflect.TypeOf(rawEntry{})
	for f := 0; f < t.NumField(); f++ {
		if tag := t.Field(f).Tag.Get("yaml"); tag != "" {
			out = append(out, tag)
		}
	}
	return out
}

// decode decodes v into dst (a pointer to a pointer), reporting a type
// mismatch with the field's name and line.
func (p *fileParser) decode(entry, field string, v *yaml.Node, dst any) bool {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		p.fail(entry, v.Line, field, errors.New("has no value"))
		return false
	}
	_, whole := dst.(**int64)
	err := v.Decode(dst)
	if err == nil && whole && v.ShortTag() != "!!int" {
		err = errors.New("yaml would truncate it") // 1.5 into an int64
	}
	if err != nil {
		want := map[reflect.Type]string{
			reflect.TypeOf((**string)(nil)):   "a string",
			reflect.TypeOf((**float64)(nil)):  "a number",
			reflect.TypeOf((**int64)(nil)):    "a whole number",
			reflect.TypeOf((**bool)(nil)):     "true or false",
			reflect.TypeOf((**[]string)(nil)): "a list of strings",
		}[reflect.TypeOf(dst)]
		got := v.Value
		if v.Kind != yaml.ScalarNode {
			got = map[yaml.Kind]string{yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list", yaml.AliasNode: "an alias"}[v.Kind]
		}
		p.fail(entry, v.Line, field, fmt.Errorf("%s is not %s", got, want))
		return false
	}
	return true
}

// entry validates a raw entry and builds it.
func (p *fileParser) entry(raw *rawEntry, loc *time.Location, defCatchUp time.Duration) (Entry, bool) {
	nerr := len(p.errs)
	label := fmt.Sprintf("#%d", raw.position)
	var e Entry
	line := func(field string) int { return raw.lineOf(field) }
	if raw.Name == nil {
		p.fail(label, raw.line, "name", errors.New("missing; every entry needs a unique name"))
	} else if !entryName.MatchString(*raw.Name) {
		p.fail(label, line("name"), "name", fmt.Errorf("%q: use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit", *raw.Name))
	} else {
		e.Name, label = *raw.Name, *raw.Name
	}

	if raw.Cron == nil {
		p.fail(label, raw.line, "cron", errors.New("missing; give a cron spec such as \"0 0 * * *\""))
	} else if sched, err := ParseSpec(*raw.Cron, loc); err != nil {
		p.fail(label, line("cron"), "cron", err)
	} else if now := time.Now(); sched.Next(now).IsZero() {
		p.fail(label, line("cron"), "cron", fmt.Errorf("cron spec %q never fires (no such date within five years)", *raw.Cron))
	} else {
		e.Spec, e.Schedule = *raw.Cron, sched
	}

	e.CatchUp = defCatchUp
	if raw.CatchUp != nil {
		d, err := parseCatchUp(*raw.CatchUp)
		if err != nil {
			p.fail(label, line("catch_up"), "catch_up", err)
		}
		e.CatchUp = d
	}

	if raw.Action == nil {
		p.fail(label, raw.line, "action", errors.New("missing; use reset or adjust"))
		return e, false
	}
	if *raw.Action == "adaptive" {
		p.fail(label, line("action"), "action", errAdaptiveRetired)
		return e, false
	}
	allowed, known := fieldsFor[*raw.Action]
	if !known {
		p.fail(label, line("action"), "action", fmt.Errorf("unknown action %q (use reset or adjust)", *raw.Action))
		return e, false
	}
	e.Action = *raw.Action
	for field := range raw.lines {
		switch field {
		case "name", "cron", "action", "catch_up":
			continue
		}
		if !slices.Contains(allowed, field) {
			p.fail(label, line(field), field, fmt.Errorf("does not apply to action %s (it takes %s)", e.Action, strings.Join(allowed, ", ")))
		}
	}
	if len(p.errs) > nerr {
		return e, false
	}

	var tenants []string
	var all bool
	switch {
	case raw.Tenant != nil && raw.Tenants != nil:
		p.fail(label, line("tenants"), "tenants", errors.New("give either tenant or tenants, not both"))
		return e, false
	case raw.Tenant != nil:
		tenants = []string{*raw.Tenant}
	case raw.Tenants != nil:
		tenants = *raw.Tenants
	}
	if raw.All != nil {
		all = *raw.All
	}
	// report reports a Validate error at the field it names, as written
	// (tenant: x is read as tenants: [x]).
	report := func(err error) {
		var fe *FieldError
		f := ""
		if errors.As(err, &fe) {
			f = fe.Field
		}
		if f == "tenants" && raw.Tenant != nil {
			f = "tenant"
		}
		p.fail(label, line(f), f, err)
	}

	switch e.Action {
	case ActionReset:
		r := Reset{Tenants: tenants, All: all}
		if err := r.Validate(); err != nil {
			report(err)
			return e, false
		}
		e.Reset = &r
	case ActionAdjust:
		a := Adjust{Tenants: tenants, All: all, Rate: raw.Rate, Burst: raw.Burst, Quota: raw.Quota, Concurrency: raw.Conc}
		if raw.Period != nil {
			d, err := parseNonNegDuration(*raw.Period)
			if err != nil {
				p.fail(label, line("quota_period"), "quota_period", err)
				return e, false
			}
			a.QuotaPeriod = &d
		}
		if err := a.Validate(); err != nil {
			report(err)
			return e, false
		}
		e.Adjust = &a
	}
	return e, len(p.errs) == nerr
}

// parseCatchUp reads a catch_up: a duration from 0 to MaxCatchUp.
func parseCatchUp(s string) (time.Duration, error) {
	d, err := parseNonNegDuration(s)
	if err == nil && d > MaxCatchUp {
		err = fmt.Errorf("%s is longer than %s (each firing's task is kept that long, so that a late replica cannot run it again)", s, MaxCatchUp)
	}
	return d, err
}

func parseNonNegDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (write e.g. 30m, 1h, 24h, or 0s)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%s is negative; use 0s or a positive duration", s)
	}
	return d, nil
}
