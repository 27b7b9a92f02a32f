package scheduler

import (
	"strings"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseSpecNext(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec string
		loc  *time.Location // the file's zone; nil: UTC
		from string
		want []string // the next activations after from, in order
	}{
		{"FiveFieldsDaily", "0 0 * * *", nil, "2026-03-01T12:00:00Z",
			[]string{"2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"}},
		{"SixFieldsSecondsFirst", "*/20 * * * * *", nil, "2026-03-01T12:00:05Z",
			[]string{"2026-03-01T12:00:20Z", "2026-03-01T12:00:40Z", "2026-03-01T12:01:00Z"}},
		{"SixFieldsFixedSecond", "30 15 10 * * *", nil, "2026-03-01T12:00:00Z",
			[]string{"2026-03-02T10:15:30Z"}},
		{"CronTZ", "CRON_TZ=Europe/Berlin 0 0 1 * *", nil, "2026-03-15T00:00:00Z",
			[]string{"2026-03-31T22:00:00Z", "2026-04-30T22:00:00Z"}}, // CEST, UTC+2
		{"TZPrefix", "TZ=America/New_York 0 9 * * *", nil, "2026-01-10T00:00:00Z",
			[]string{"2026-01-10T14:00:00Z"}},
		{"FileZoneForSpecsWithoutTZ", "0 0 * * *", berlin, "2026-01-10T12:00:00Z",
			[]string{"2026-01-10T23:00:00Z"}}, // CET, UTC+1
		{"CronTZBeatsFileZone", "CRON_TZ=UTC 0 0 * * *", berlin, "2026-01-10T12:00:00Z",
			[]string{"2026-01-11T00:00:00Z"}},
		{"Daily", "@daily", nil, "2026-03-01T12:00:00Z", []string{"2026-03-02T00:00:00Z"}},
		{"Monthly", "@monthly", nil, "2026-03-01T00:00:00Z", []string{"2026-04-01T00:00:00Z"}},
		{"EveryAlignedToEpoch", "@every 10m", nil, "2026-03-01T12:03:17Z",
			[]string{"2026-03-01T12:10:00Z", "2026-03-01T12:20:00Z"}},
		{"EveryOnTheBoundary", "@every 1h", nil, "2026-03-01T12:00:00Z",
			[]string{"2026-03-01T13:00:00Z"}},
		{"EveryWithZone", "CRON_TZ=Europe/Berlin @every 90s", nil, "2026-03-01T12:00:00Z",
			[]string{"2026-03-01T12:01:30Z", "2026-03-01T12:03:00Z"}},
		// Across daylight-saving changes a spec with fixed hours fires as
		// classic cron does: once right after a spring gap that skipped its
		// wall time, once at a wall time an autumn change repeats. Specs
		// that fire every hour follow real time.
		// Berlin 2026: 02:00 CET -> 03:00 CEST on March 29, 03:00 CEST -> 02:00 CET on October 25
		{"SpringSkippedFiresAfterTheGap", "CRON_TZ=Europe/Berlin 30 2 * * *", nil, "2026-03-27T12:00:00Z",
			[]string{"2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"}},
		{"SpringInTheFileZone", "30 2 * * *", berlin, "2026-03-28T12:00:00Z",
			[]string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"}},
		{"SpringTwoSkippedFireOnce", "CRON_TZ=Europe/Berlin 0,30 2 * * *", nil, "2026-03-28T12:00:00Z",
			[]string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00", "2026-03-30T02:30:00+02:00"}},
		{"SpringSkippedAndRightAfterFireOnce", "CRON_TZ=Europe/Berlin 0 2,3 * * *", nil, "2026-03-28T12:00:00Z",
			[]string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"}},
		{"SpringFromInsideTheDay", "CRON_TZ=Europe/Berlin 30 2 * * *", nil, "2026-03-29T00:59:59Z",
			[]string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"}},
		{"SpringOutsideTheGapUnchanged", "CRON_TZ=Europe/Berlin 0 4 * * *", nil, "2026-03-28T12:00:00Z",
			[]string{"2026-03-29T04:00:00+02:00", "2026-03-30T04:00:00+02:00"}},
		{"AutumnRepeatedFiresOnce", "CRON_TZ=Europe/Berlin 30 2 * * *", nil, "2026-10-23T12:00:00Z",
			[]string{"2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"}},
		{"AutumnFromTheFirstPass", "CRON_TZ=Europe/Berlin 30 2 * * *", nil, "2026-10-25T02:45:00+02:00",
			[]string{"2026-10-26T02:30:00+01:00"}},
		{"AutumnRangeOfHours", "CRON_TZ=Europe/Berlin 0 1-3 * * *", nil, "2026-10-24T23:00:00Z",
			[]string{"2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00", "2026-10-26T01:00:00+01:00"}},
		{"HourlyFollowsRealTimeInSpring", "CRON_TZ=Europe/Berlin 0 * * * *", nil, "2026-03-29T01:30:00+01:00",
			[]string{"2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"}},
		{"HourlyFollowsRealTimeInAutumn", "CRON_TZ=Europe/Berlin 0 * * * *", nil, "2026-10-25T01:30:00+02:00",
			[]string{"2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"}},
		// New York 2026: 02:00 EST -> 03:00 EDT on March 8, 02:00 EDT -> 01:00 EST on November 1
		{"NewYorkSpring", "TZ=America/New_York 30 2 * * *", nil, "2026-03-07T12:00:00Z",
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"}},
		{"NewYorkAutumn", "TZ=America/New_York 30 1 * * *", nil, "2026-10-31T12:00:00Z",
			[]string{"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"}},
		// Lord Howe Island moves by half an hour: 02:00 -> 02:30 on October 4, 2026
		{"HalfHourChange", "CRON_TZ=Australia/Lord_Howe 15 2 * * *", nil, "2026-10-02T12:00:00Z",
			[]string{"2026-10-03T02:15:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"}},
		{"NoChangesInUTC", "30 2 * * *", nil, "2026-03-28T12:00:00Z",
			[]string{"2026-03-29T02:30:00Z", "2026-03-30T02:30:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSpec(tt.spec, tt.loc)
			if err != nil {
				t.Fatalf("ParseSpec(%q): %v", tt.spec, err)
			}
			at := mustTime(t, tt.from)
			for _, w := range tt.want {
				at = s.Next(at)
				if want := mustTime(t, w); !at.Equal(want) {
					t.Fatalf("Next = %s, want %s", at.UTC().Format(time.RFC3339), w)
				}
			}
		})
	}
}

// The schedule does not depend on the zone of the time given to Next: two
// replicas in different local zones agree.
func TestParseSpecIgnoresCallerZone(t *testing.T) {
	t.Parallel()
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{"0 0 * * *", "@daily", "@every 7m", "CRON_TZ=Europe/Berlin 0 3 * * *"} {
		s, err := ParseSpec(spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		from := mustTime(t, "2026-03-01T12:34:56Z")
		a, b := s.Next(from), s.Next(from.In(tokyo))
		if !a.Equal(b) {
			t.Errorf("%q: Next from UTC = %s, from Tokyo = %s", spec, a, b)
		}
	}
}

func TestParseSpecErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ spec, want string }{
		{"", "empty cron spec"},
		{"   ", "empty cron spec"},
		{"0 0 * *", "expected 5 to 6 fields"},
		{"0 0 0 * * * *", "expected 5 to 6 fields"},
		{"61 * * * *", "above maximum"},
		{"* * 32 * *", "above maximum"},
		{"every day", "expected 5 to 6 fields"},
		{"CRON_TZ=Mars/Olympus 0 0 * * *", "bad location"},
		{"CRON_TZ=UTC", "no schedule after it"},
		{"TZ=UTC", "no schedule after it"},
		{"@often", "unrecognized descriptor"},
		{"@every", "unrecognized descriptor"},
		{"@every soon", "not a duration"},
		{"@every 500ms", "at least 1s"},
		{"@every 1500ms", "whole number of seconds"},
		{"@every -5s", "at least 1s"},
	}
	for _, tt := range tests {
		_, err := ParseSpec(tt.spec, nil)
		if err == nil {
			t.Errorf("ParseSpec(%q) = nil error, want one containing %q", tt.spec, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseSpec(%q) = %q, want it to contain %q", tt.spec, err, tt.want)
		}
	}
}

func TestPrevFire(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec        string
		after, upTo string
		want        string // "" for none
	}{
		{"0 0 * * *", "2026-03-01T23:00:00Z", "2026-03-02T00:30:00Z", "2026-03-02T00:00:00Z"},
		{"0 0 * * *", "2026-03-02T00:00:00Z", "2026-03-02T00:30:00Z", ""},                     // after is exclusive
		{"0 0 * * *", "2026-03-01T23:00:00Z", "2026-03-02T00:00:00Z", "2026-03-02T00:00:00Z"}, // upTo inclusive
		{"*/15 * * * *", "2026-03-01T10:00:00Z", "2026-03-01T11:07:00Z", "2026-03-01T11:00:00Z"},
		{"0 0 1 * *", "2026-03-02T00:00:00Z", "2026-03-20T00:00:00Z", ""},
	}
	for _, tt := range tests {
		s, err := ParseSpec(tt.spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := prevFire(s, mustTime(t, tt.after), mustTime(t, tt.upTo))
		if tt.want == "" {
			if !got.IsZero() {
				t.Errorf("prevFire(%q, %s, %s) = %s, want none", tt.spec, tt.after, tt.upTo, got)
			}
			continue
		}
		if want := mustTime(t, tt.want); !got.Equal(want) {
			t.Errorf("prevFire(%q, %s, %s) = %s, want %s", tt.spec, tt.after, tt.upTo, got, want)
		}
	}
}
