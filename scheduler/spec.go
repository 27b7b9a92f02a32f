package scheduler

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// specParser accepts 5-field specs (minute first) and 6-field specs (second
// first), descriptors such as @daily and @every 10m, and a CRON_TZ= or TZ=
// prefix.
var specParser = cron.NewParser(
	cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor,
)

// ParseSpec parses a cron spec the way a schedule file does. It accepts five
// fields ("0 0 * * *", minute first) or six ("30 0 0 * * *", second first),
// descriptors (@yearly, @monthly, @weekly, @daily, @hourly, @every 90s) and a
// leading CRON_TZ=Zone. A spec without a zone is read in loc (nil: UTC).
//
// "@every d" fires at the multiples of d since the Unix epoch, not d after
// whenever a process started, so that every scheduler replica computes the
// same fire times; d must be a whole number of seconds, at least one.
//
// Across daylight-saving changes, a spec with fixed hours fires as classic
// cron does: a firing the spring change skips runs once right after the
// gap, and a wall time the autumn change repeats fires once (see dst.go).
//
// The returned Schedule is pure: Next depends on its argument alone.
func ParseSpec(spec string, loc *time.Location) (cron.Schedule, error) {
	if loc == nil {
		loc = time.UTC
	}
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, fmt.Errorf("empty cron spec (write e.g. \"0 0 * * *\" for daily at midnight)")
	}
	// cron's parser slices past the end of "CRON_TZ=UTC" with nothing after
	// the zone; catch that before it does.
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		if !strings.ContainsAny(spec, " \t") {
			return nil, fmt.Errorf("cron spec %q has a time zone but no schedule after it", spec)
		}
	}
	if every, ok := strings.CutPrefix(specWithoutZone(spec), "@every "); ok {
		return parseEvery(strings.TrimSpace(every))
	}
	s, err := parseCron(spec)
	if err != nil {
		return nil, fmt.Errorf("cron spec %q: %v (use 5 fields \"min hour dom month dow\" or 6 with seconds first)", spec, err)
	}
	ss, ok := s.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("cron spec %q: unexpected schedule type %T", spec, s)
	}
	if ss.Location == time.Local {
		// No zone in the spec: cron would read it in the zone of the time
		// passed to Next. Pin it to the file's zone instead.
		return withDST(zoned{ss, loc}, ss, loc), nil
	}
	return withDST(ss, ss, ss.Location), nil
}

// parseCron runs cron's parser, turning a panic on malformed input into an
// error.
func parseCron(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("malformed: %v", r)
		}
	}()
	return specParser.Parse(spec)
}

func specWithoutZone(spec string) string {
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		if i := strings.IndexAny(spec, " \t"); i >= 0 {
			return strings.TrimSpace(spec[i:])
		}
	}
	return spec
}

func parseEvery(s string) (cron.Schedule, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, fmt.Errorf("@every %s: %q is not a duration (write e.g. \"@every 30s\" or \"@every 1h\")", s, s)
	}
	if d < time.Second || d%time.Second != 0 {
		return nil, fmt.Errorf("@every %s: the interval must be a whole number of seconds, at least 1s", s)
	}
	return every{d}, nil
}

// every fires at the multiples of d since the Unix epoch.
type every struct{ d time.Duration }

func (e every) Next(t time.Time) time.Time {
	secs := int64(e.d / time.Second)
	u := t.Unix()
	n := (u/secs + 1) * secs
	if u < 0 && u%secs != 0 {
		n -= secs // floor division for times before 1970
	}
	return time.Unix(n, 0).In(t.Location())
}

// zoned reads a spec without its own zone in loc.
type zoned struct {
	s   *cron.SpecSchedule
	loc *time.Location
}

func (z zoned) Next(t time.Time) time.Time {
	n := z.s.Next(t.In(z.loc))
	if n.IsZero() {
		return n
	}
	return n.In(t.Location())
}

// prevFire returns the latest activation of s in (after, upTo], or the zero
// time when there is none. It walks forward with Next, so it costs one call per
// activation in the interval; callers keep the interval short.
func prevFire(s cron.Schedule, after, upTo time.Time) time.Time {
	var last time.Time
	for t := s.Next(after); !t.IsZero() && !t.After(upTo); t = s.Next(t) {
		last = t
	}
	return last
}
