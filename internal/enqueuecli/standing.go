package enqueuecli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/quotaq/quotaq/internal/redisconn"
	"github.com/quotaq/quotaq/internal/tenantstatus"
)

const standingHelp = `Usage:
  quotaq-enqueue standing TENANT [--queues q1,q2] [--json]
  quotaq-enqueue status [TENANT...] [--queues q1,q2] [--json]

standing shows where one tenant stands: its policy, the tokens in its bucket
now, its quota used and when it resets, whether it is paused (its upstream
said 429) and how often it was, its tasks by state (found by their
"tenant" header), and its tasks a worker put back by why they wait: their
turn at its rate, at its upstream's rate, its quota, a pause, a concurrency
slot (--json: "waiting"."by_cause"). status shows the same for every tenant, one line each: those
with a policy of their own and those with tasks in the queues. Nothing is
consumed. Task counts list the queues, which takes one to a few seconds per
100,000 tasks. While workers run in shadow mode (quotaq-worker --shadow: they
count what they would throttle and run every task), both say so and show how
many of each tenant's tasks ran that would have been throttled.

Units: a policy reads "5/s burst 20 quota 10000 per 24h0m0s": a rate in tokens
per second, a burst and a quota in tokens, the quota's period (aligned to
UTC: a 24h quota resets at 00:00 UTC). Times left ("resets in", "full in")
are durations from now.
`

type queuesFlag []string

func (q *queuesFlag) String() string { return strings.Join(*q, ",") }

func (q *queuesFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*q = append(*q, s)
		}
	}
	return nil
}

func runStanding(ctx context.Context, c *common, args []string, cio cmdIO) error {
	return runStatusCmd(ctx, c, args, cio, true)
}

func runStatus(ctx context.Context, c *common, args []string, cio cmdIO) error {
	return runStatusCmd(ctx, c, args, cio, false)
}

func runStatusCmd(ctx context.Context, c *common, args []string, cio cmdIO, one bool) error {
	name := "status"
	if one {
		name = "standing"
	}
	fs := newFlagSet(name, c)
	var queues queuesFlag
	fs.Var(&queues, "queues", "comma-separated asynq `queues` to count tasks in (default: all)")
	pos, err := parse(fs, args, commandHelp(standingHelp, fs), cio.stdout)
	if err != nil {
		return err
	}
	if one {
		t, err := oneTenant(pos, false)
		if err != nil {
			return err
		}
		pos = []string{t}
	} else {
		for _, t := range pos {
			if _, err := oneTenant([]string{t}, false); err != nil {
				return err
			}
		}
	}

	conn, err := c.open(ctx, cio.stderr)
	if err != nil {
		return err
	}
	defer conn.Close()
	insp := c.inspector(conn)
	defer insp.Close()
	l := c.limiter(ctx, conn)
	sts, err := tenantstatus.Collect(ctx, l, insp, tenantstatus.Options{Tenants: pos, Queues: queues, Asynq: conn.Redis})
	if err != nil {
		return err
	}
	if one {
		if c.json {
			return json.NewEncoder(cio.stdout).Encode(sts[0])
		}
		if err := printStanding(cio.stdout, sts[0]); err != nil {
			return err
		}
		return printRedis(cio.stdout, conn)
	}
	if c.json {
		if sts == nil {
			sts = []tenantstatus.Status{}
		}
		return json.NewEncoder(cio.stdout).Encode(sts)
	}
	shadow, err := tenantstatus.ShadowMode(ctx, l, conn.Redis)
	if err != nil {
		return err
	}
	if err := printStatusTable(cio.stdout, sts, shadow); err != nil {
		return err
	}
	return printRedis(cio.stdout, conn)
}

// printRedis ends the text output with the server and its maxmemory-policy:
// anything but noeviction lets Redis drop limits and tasks.
func printRedis(w io.Writer, conn *redisconn.Conn) error {
	p := conn.MaxmemoryPolicy
	if p == "" {
		p = "unknown (CONFIG GET refused)"
	}
	_, err := fmt.Fprintf(w, "\nredis %s, maxmemory-policy %s\n", conn.Addr, p)
	return err
}

func printStanding(w io.Writer, s tenantstatus.Status) error {
	own := "its own"
	if !s.Explicit {
		own = "the default"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "tenant\t%s\n", s.Tenant)
	fmt.Fprintf(tw, "policy\t%s (%s)\n", s.Policy, own)
	tokens := fmt.Sprintf("%d of %d", s.Tokens, s.Policy.Burst)
	if s.FullIn > 0 {
		tokens += ", full in " + dur(s.FullIn)
	}
	switch {
	case s.NextTokenIn > 0 && s.Booked > 0:
		// the bucket is spent on bookings: its waiting tasks run in turn,
		// one new task would come after them
		tokens += fmt.Sprintf(", booked ahead by %d waiting task(s): a task enqueued now runs in %s", s.Booked, dur(s.NextTokenIn))
	case s.NextTokenIn > 0:
		tokens += ", next token in " + dur(s.NextTokenIn)
	}
	fmt.Fprintf(tw, "tokens\t%s\n", tokens)
	fmt.Fprintf(tw, "quota\t%s\n", quotaText(s.Quota, s.Booked))
	paused := "no"
	if s.HoldLeft > 0 {
		paused = "yes, " + dur(s.HoldLeft) + " left (its upstream asked to wait)"
	}
	fmt.Fprintf(tw, "paused\t%s (held %d times)\n", paused, s.Holds)
	if s.LearnedRate > 0 {
		fmt.Fprintf(tw, "rate now\t%s/s of the policy's %s/s, slowed by its upstream's refusals (429); back in %s\n",
			strconv.FormatFloat(s.LearnedRate, 'f', -1, 64), strconv.FormatFloat(s.Policy.Rate, 'f', -1, 64), dur(s.LearnedFullIn))
	}
	fmt.Fprintf(tw, "in flight\t%s\n", inFlightText(s))
	t := s.Tasks
	fmt.Fprintf(tw, "tasks\tpending %d, scheduled %d, retry %d, active %d, archived %d\n", t.Pending, t.Scheduled, t.Retry, t.Active, t.Archived)
	fmt.Fprintf(tw, "waiting\t%s\n", waitingText(s))
	if s.Shadow != nil {
		fmt.Fprintf(tw, "shadow\t%s\n", shadowText(s.Shadow))
	}
	return tw.Flush()
}

// shadowText says that workers run in shadow mode, and what they would have
// throttled of a tenant.
func shadowText(sh *tenantstatus.Shadow) string {
	counted := fmt.Sprintf("%d of its tasks ran that would have been throttled%s", sh.WouldThrottle, sinceText(sh))
	if sh.Workers == 0 {
		return "no worker runs in shadow mode now; while some did, " + counted
	}
	return fmt.Sprintf("%s in shadow mode: decisions are counted, not enforced; %s", workersText(sh.Workers), counted)
}

func workersText(n int) string {
	if n == 1 {
		return "1 worker"
	}
	return fmt.Sprintf("%d workers", n)
}

// inFlightText says how many of a tenant's tasks run now against its
// concurrency limit.
func inFlightText(s tenantstatus.Status) string {
	if s.Policy.Concurrency == 0 {
		return "no limit"
	}
	return fmt.Sprintf("%d of %d, %d waiting for a slot", s.InFlight, s.Policy.Concurrency, s.Waiting.ForSlot)
}

// waitingText says what a tenant's put-back tasks wait for, when the
// first is due, and about when its queued tasks will have run.
func waitingText(s tenantstatus.Status) string {
	w := s.Waiting
	c := w.ByCause
	text := fmt.Sprintf("%d for their turn (the rate), %d for the upstream's rate, %d for the quota, %d for a pause (429 or hold), %d for a concurrency slot",
		c.Rate, c.Upstream, c.Quota, c.Hold, c.Concurrency)
	if c.Outage > 0 {
		text += fmt.Sprintf(", %d for Redis to answer again", c.Outage)
	}
	if c.Invalid > 0 {
		text += fmt.Sprintf(", %d for a valid policy (fix it with quotaq-enqueue policy set)", c.Invalid)
	}
	switch {
	case w.DueNow:
		text += "; the next is due now (it runs as soon as a worker takes it)"
	case w.NextDueIn > 0:
		text += "; the next is due in " + dur(w.NextDueIn)
	}
	if w.DrainIn > 0 {
		text += "; its queued tasks run in about " + dur(w.DrainIn) + " at its rate now"
	}
	return text
}

func quotaText(q *tenantstatus.Quota, booked int64) string {
	if q == nil {
		return "none"
	}
	s := fmt.Sprintf("%d of %d used (%d left)", q.Used, q.Limit, q.Remaining)
	if booked > 0 {
		s += fmt.Sprintf(", counting the bookings of %d tasks waiting their turn", booked)
	}
	if q.ResetsIn > 0 {
		s += ", resets in " + dur(q.ResetsIn)
	} else {
		s += ", resets when reset (schedule or quota reset)"
	}
	return s
}

func printStatusTable(w io.Writer, sts []tenantstatus.Status, shadow *tenantstatus.Shadow) error {
	if shadow != nil {
		fmt.Fprintf(w, "shadow mode: %s\n", shadowSummary(shadow))
	}
	if len(sts) == 0 {
		_, err := fmt.Fprintln(w, "no tenants: none has a policy of its own or tasks in the queues")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "TENANT\tPOLICY\tTOKENS\tQUOTA USED\tRESETS IN\tPAUSED\tHOLDS\tIN FLIGHT\tPENDING\tSCHEDULED\tRETRY\tACTIVE\tARCHIVED"
	if shadow != nil {
		head += "\tWOULD THROTTLE"
	}
	fmt.Fprintln(tw, head)
	for _, s := range sts {
		pol := s.Policy.String()
		if !s.Explicit {
			pol += " (default)"
		}
		used, resets := "-", "-"
		if s.Quota != nil {
			used = fmt.Sprintf("%d/%d", s.Quota.Used, s.Quota.Limit)
			if s.Quota.ResetsIn > 0 {
				resets = dur(s.Quota.ResetsIn)
			}
		}
		paused := "no"
		if s.HoldLeft > 0 {
			paused = "yes, " + dur(s.HoldLeft)
		}
		inFlight := "-"
		if s.Policy.Concurrency > 0 {
			inFlight = fmt.Sprintf("%d/%d +%d", s.InFlight, s.Policy.Concurrency, s.Waiting.ForSlot)
		}
		t := s.Tasks
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d", strconv.Quote(s.Tenant)[1:len(strconv.Quote(s.Tenant))-1],
			pol, s.Tokens, s.Policy.Burst, used, resets, paused, s.Holds, inFlight, t.Pending, t.Scheduled, t.Retry, t.Active, t.Archived)
		if shadow != nil && s.Shadow != nil {
			fmt.Fprintf(tw, "\t%d", s.Shadow.WouldThrottle)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// shadowSummary is the status table's line on shadow mode.
func shadowSummary(sh *tenantstatus.Shadow) string {
	if sh.Workers == 0 {
		return "no worker runs in shadow mode now; WOULD THROTTLE counts the tasks that ran while some did" + sinceText(sh)
	}
	does := "counts what it would throttle and runs"
	if sh.Workers > 1 {
		does = "count what they would throttle and run"
	}
	return fmt.Sprintf("%s %s every task (decisions are not enforced); WOULD THROTTLE counts the tasks that ran but would have been throttled%s",
		workersText(sh.Workers), does, sinceText(sh))
}

// sinceText is " (counted since ...)" when counting began.
func sinceText(sh *tenantstatus.Shadow) string {
	if sh.Since.IsZero() {
		return " (none counted yet)"
	}
	return " (counted since " + sh.Since.UTC().Format("2006-01-02 15:04:05 UTC") + ")"
}

// dur rounds d for people: 3h12m0s, 1.5s, 250ms.
func dur(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}
