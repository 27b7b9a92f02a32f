package scheduler

import (
	"time"

	"github.com/robfig/cron/v3"
)

// Daylight-saving changes, as classic cron (Vixie cron) reads them.
//
// robfig/cron's Schedule.Next skips a wall time that a spring change leaves
// out ("30 2 * * *" in Europe/Berlin does not fire on the last Sunday of
// March) and fires twice at one that an autumn change repeats (02:30 CEST
// and 02:30 CET): a quota reset would be missed for 48 hours, or run twice
// under two task IDs. An entry whose hours are fixed (any hour field but
// every hour) is read as classic cron does instead:
//
//   - a firing whose wall time a spring change skips fires once, right after
//     the gap (at 03:00 CEST for 02:30 in Berlin), however many of its wall
//     times the gap held;
//   - a wall time that an autumn change repeats fires once, the first time.
//
// An entry that fires every hour ("0 * * * *", @hourly, "*/5 * * * *",
// @every) follows real time: it fires at each hour that exists, twice in a
// repeated one. Every replica computes the same fire times, so the task IDs
// keep each firing to one task.

// dstSafe is a spec with fixed hours read across daylight-saving changes
// as above. Next depends on its argument alone.
type dstSafe struct {
	s    cron.Schedule      // the spec in its zone: robfig's schedule, or zoned
	wall *cron.SpecSchedule // the same spec read in UTC, on wall-clock readings, which have no gaps
	loc  *time.Location
}

// withDST wraps ss, read in loc, when its hours are fixed; s is how ss is
// read in loc (ss itself, or zoned).
func withDST(s cron.Schedule, ss *cron.SpecSchedule, loc *time.Location) cron.Schedule {
	const everyHour = 1<<24 - 1
	if ss.Hour&everyHour == everyHour {
		return s
	}
	wall := *ss
	wall.Location = time.UTC
	return dstSafe{s: s, wall: &wall, loc: loc}
}

func (d dstSafe) Next(t time.Time) time.Time {
	n := d.s.Next(t)
	for !n.IsZero() && repeated(n.In(d.loc)) {
		n = d.s.Next(n)
	}
	limit := n
	if limit.IsZero() {
		limit = t.AddDate(5, 0, 0) // as far as robfig looks
	}
	// a spring change before n that skipped a wall time of the spec fires
	// once, where the gap ends
	for _, end := t.In(d.loc).ZoneBounds(); !end.IsZero() && !end.After(limit); _, end = end.ZoneBounds() {
		_, before := end.Add(-time.Nanosecond).Zone()
		_, after := end.Zone()
		gap := time.Duration(after-before) * time.Second
		if gap <= 0 {
			continue
		}
		wallEnd := wallClock(end)
		if w := d.wall.Next(wallEnd.Add(-gap - time.Nanosecond)); !w.IsZero() && w.Before(wallEnd) {
			return end.In(t.Location())
		}
	}
	return n
}

// repeated reports whether t's wall-clock reading was read before, in the
// hour an autumn change repeats (t in its zone).
func repeated(t time.Time) bool {
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, before := start.Add(-time.Nanosecond).Zone()
	_, after := start.Zone()
	back := time.Duration(before-after) * time.Second
	return back > 0 && t.Sub(start) < back
}

// wallClock returns t's wall-clock reading in its zone, as a UTC time.
func wallClock(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, mo, d, h, mi, s, t.Nanosecond(), time.UTC)
}
