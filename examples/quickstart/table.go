package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// render writes the table of s: one row per tenant, then the totals.
func render(w io.Writer, s Summary) {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	rateHead := "rate now"
	if s.Final {
		rateHead = "rate"
	}
	fmt.Fprintf(tw, "tenant\tpolicy\tupstream plan\tprocessed\tthrottled\tre-queued\t%s / policy\tquota left\tupstream 429s\n", rateHead)
	var served, refused int64
	for _, r := range s.Rows {
		quota := "-"
		if r.QuotaLeft >= 0 {
			quota = fmt.Sprintf("%d of %d", r.QuotaLeft, r.Policy.Quota)
			if r.QuotaReset > 0 && !s.Final {
				quota += fmt.Sprintf(", reset in %s", r.QuotaReset.Round(100*time.Millisecond))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%.1f/s of %g/s\t%s\t%d\n",
			r.ID, describePolicy(r.Policy), r.Plan, r.Processed, r.Tasks, r.Throttled, r.Requeued,
			r.Rate, r.Policy.Rate, quota, r.Refused)
		served += r.Served
		refused += r.Refused
	}
	_ = tw.Flush()
	fmt.Fprintf(&b, "%s  %d tasks processed, %d quota resets by the scheduler, upstream: %d served, %d refused (429), %d failed\n",
		s.Elapsed.Round(100*time.Millisecond), s.Processed(), s.Resets, served, refused, s.Failed)
	_, _ = w.Write(b.Bytes())
}

// liveTable redraws the table in place on a terminal, or prints it now and
// then elsewhere.
type liveTable struct {
	w     io.Writer
	tty   bool
	lines int // lines drawn last time (tty)
	every time.Duration
	last  time.Time
}

func (t *liveTable) draw(s Summary) {
	if !t.tty {
		if !t.last.IsZero() && time.Since(t.last) < t.every {
			return
		}
		t.last = time.Now()
		render(t.w, s)
		fmt.Fprintln(t.w)
		return
	}
	var b bytes.Buffer
	render(&b, s)
	out := b.String()
	if t.lines > 0 {
		fmt.Fprintf(t.w, "\x1b[%dA", t.lines) // back to the table's first line
	}
	for _, line := range strings.SplitAfter(out, "\n") {
		if line != "" {
			fmt.Fprint(t.w, "\x1b[2K"+line) // clear the line, then write it
		}
	}
	t.lines = strings.Count(out, "\n")
}
