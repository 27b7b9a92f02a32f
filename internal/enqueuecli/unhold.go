package enqueuecli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/quotaq/quotaq/worker"
)

const unholdHelp = `Usage:
  quotaq-enqueue unhold TENANT...

Lifts each tenant's pause now (set when its upstream answered 429 or 503
with Retry-After, or by Hold) and forgets the rate learned from those
refusals, so that it runs at its policy's rate again; then brings back its
tasks parked to wait for the pause. Its bookings, quota and bucket stay.
An upstream is named upstream:NAME. Use it when the upstream has recovered
sooner than it said; the web page's "Release hold" does the same.

Examples:
  quotaq-enqueue unhold acme
  quotaq-enqueue unhold upstream:api.example.com --json
`

func runUnhold(ctx context.Context, c *common, args []string, cio cmdIO) error {
	fs := newFlagSet("unhold", c)
	pos, err := parse(fs, args, commandHelp(unholdHelp, fs), cio.stdout)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("give the tenants to unhold")
	}
	for _, t := range pos {
		if _, err := oneTenant([]string{t}, false); err != nil {
			return err
		}
	}
	conn, err := c.open(ctx, cio.stderr)
	if err != nil {
		return err
	}
	defer conn.Close()
	l := c.limiter(ctx, conn)
	type result struct {
		Tenant string `json:"tenant"`
		Lifted bool   `json:"lifted"` // a pause in force or a learned rate was lifted
	}
	var out []result
	for _, t := range pos {
		had, err := l.Unhold(ctx, t)
		if err != nil {
			return err
		}
		out = append(out, result{t, had})
	}
	n, err := worker.ReleaseParked(ctx, conn.Redis, l, pos...)
	if err != nil {
		return fmt.Errorf("unheld, but the parked tasks still wait for their time: %w", err)
	}
	if c.json {
		return json.NewEncoder(cio.stdout).Encode(struct {
			Tenants  []result `json:"tenants"`
			Released int      `json:"released"`
		}{out, n})
	}
	for _, r := range out {
		if r.Lifted {
			fmt.Fprintf(cio.stdout, "%s: pause lifted, it runs at its policy's rate again\n", r.Tenant)
		} else {
			fmt.Fprintf(cio.stdout, "%s: no pause or slowed rate to lift\n", r.Tenant)
		}
	}
	_, err = fmt.Fprintf(cio.stdout, "%d parked tasks brought back to run\n", n)
	return err
}
