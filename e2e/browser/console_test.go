package browser

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the page's screenshots into docs/ (the README shows them)")

// The page, in Chromium, against a worker with a throttled backlog: what it
// shows is what quotaq-enqueue status --json and standing --json say; its
// table sorts, filters and pages; an action works with --console-actions
// and is absent without.
func TestConsoleInChromium(t *testing.T) {
	ctx := newBrowser(t)
	srv, err := redistest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	env := []string{"REDIS_URL=redis://" + srv.Addr + "/0"}
	workerBin, enqueueBin := buildBinaries(t)
	q := cli{bin: enqueueBin, env: env}

	// acme runs a backlog at 2/s; beta used its daily quota of 5 and waits
	// for it; gamma is held for an hour, its tasks booked after the hold (its upstream said 429); 60 more
	// tenants have a policy and nothing queued
	q.run(t, "policy", "set", "acme", "--rate", "2", "--burst", "2")
	q.run(t, "policy", "set", "beta", "--rate", "1", "--burst", "1", "--quota", "5", "--quota-period", "24h")
	q.run(t, "policy", "set", "gamma", "--rate", "1", "--burst", "1")
	for i := range 60 {
		q.run(t, "policy", "set", fmt.Sprintf("t-%03d", i), "--rate", "0.5", "--burst", "1")
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := throttle.New(rdb).Hold(context.Background(), "gamma", time.Hour); err != nil {
		t.Fatal(err)
	}
	q.run(t, "--tenant", "acme", "--type", "echo", "--count", "400")
	q.run(t, "--tenant", "beta", "--type", "echo", "--count", "20")
	q.run(t, "--tenant", "gamma", "--type", "echo", "--count", "10")

	w := startWorker(t, workerBin, env, "--console-actions")
	until(t, 30*time.Second, "beta's 15 and gamma's 10 tasks parked", func() (bool, string) {
		st := q.status(t)
		return st["beta"].Waiting.Other == 15 && st["gamma"].Waiting.Turn+st["gamma"].Waiting.Other == 10, fmt.Sprintf("%+v\n%+v", st["beta"], st["gamma"])
	})

	t.Run("TableShowsWhatStatusSays", func(t *testing.T) {
		run(t, ctx, "open the page", chromedp.Navigate(strings.TrimSuffix(w.page, "ui/")), // / redirects to /ui/
			chromedp.WaitVisible(chromedp.CSS(`body[data-loaded="table"]`)))
		until(t, 20*time.Second, "the first page to match quotaq-enqueue status --json", func() (bool, string) {
			var rows [][]string
			eval(t, ctx, rowsJS, &rows)
			st := q.status(t)
			var diff []string
			for _, row := range rows {
				s, ok := st[row[0]]
				if !ok {
					diff = append(diff, "the page shows "+row[0]+", status does not")
					continue
				}
				want := tableCells(s)
				if row[0] == "acme" {
					want, row = want[:2], row[:2] // its backlog moves
				}
				if got := pageCells(row); !slices.Equal(got, want) {
					diff = append(diff, fmt.Sprintf("page %q\nCLI  %q", got, want))
				}
			}
			if len(rows) != 50 {
				diff = append(diff, fmt.Sprintf("%d rows, want 50", len(rows)))
			}
			return len(diff) == 0, strings.Join(diff, "\n")
		})
		var count string
		eval(t, ctx, `document.getElementById("count").textContent`, &count)
		if count != "63 tenants" {
			t.Errorf("count %q, want 63 tenants", count)
		}
	})

	firstTenants := func() string {
		var rows [][]string
		eval(t, ctx, rowsJS, &rows)
		var ids []string
		for _, r := range rows {
			ids = append(ids, r[0])
		}
		return strings.Join(ids, ",")
	}
	t.Run("TableSortsFiltersAndPages", func(t *testing.T) {
		run(t, ctx, "sort by scheduled, then descending",
			chromedp.Click(chromedp.CSS(`th[data-sort="scheduled"]`)))
		until(t, 10*time.Second, "an ascending sort by scheduled tasks", func() (bool, string) {
			ids := firstTenants()
			return strings.HasPrefix(ids, "t-000,"), ids
		})
		run(t, ctx, "sort descending", chromedp.Click(chromedp.CSS(`th[data-sort="scheduled"]`)))
		until(t, 10*time.Second, "acme, beta, gamma first", func() (bool, string) {
			ids := firstTenants()
			return strings.HasPrefix(ids, "acme,beta,gamma,"), ids
		})
		run(t, ctx, "filter", chromedp.SendKeys(chromedp.CSS("#filter"), "T-01"))
		until(t, 10*time.Second, "the ten tenants t-01x", func() (bool, string) {
			var count string
			eval(t, ctx, `document.getElementById("count").textContent`, &count)
			ids := strings.Split(firstTenants(), ",")
			slices.Sort(ids)
			return count == "10 of 63 tenants" && len(ids) == 10 && ids[0] == "t-010" && ids[9] == "t-019", count + " " + strings.Join(ids, ",")
		})
		run(t, ctx, "clear the filter, sort by tenant, 25 a page",
			script(`{ const f = document.getElementById("filter"); f.value = ""; f.dispatchEvent(new Event("input"));
				const s = document.getElementById("perpage"); s.value = "25"; s.dispatchEvent(new Event("change")); }`),
			chromedp.Click(chromedp.CSS(`th[data-sort="tenant"]`)))
		until(t, 10*time.Second, "page 1 of 3 by tenant", func() (bool, string) {
			var info string
			eval(t, ctx, `document.getElementById("pageinfo").textContent`, &info)
			ids := firstTenants()
			return info == "page 1 of 3" && strings.HasPrefix(ids, "acme,beta,gamma,t-000,"), info + " " + ids
		})
		run(t, ctx, "next page", chromedp.Click(chromedp.CSS("#next")))
		until(t, 10*time.Second, "page 2 from t-022", func() (bool, string) {
			var info string
			eval(t, ctx, `document.getElementById("pageinfo").textContent`, &info)
			ids := firstTenants()
			return info == "page 2 of 3" && strings.HasPrefix(ids, "t-022,") && strings.Count(ids, ",") == 24, info + " " + ids
		})
		if *updateScreenshot {
			run(t, ctx, "back to page 1", chromedp.Click(chromedp.CSS("#prev")))
			until(t, 10*time.Second, "page 1", func() (bool, string) { return strings.HasPrefix(firstTenants(), "acme,"), firstTenants() })
			screenshot(t, ctx, "console-table.png")
		}
	})

	t.Run("TenantPageShowsWhatStandingSays", func(t *testing.T) {
		run(t, ctx, "open beta's page", chromedp.Navigate(w.page+"#/tenant/beta"),
			chromedp.WaitVisible(chromedp.CSS(`body[data-loaded="tenant"]`)))
		want := map[string]string{}
		until(t, 20*time.Second, "beta's page to match quotaq-enqueue standing beta --json", func() (bool, string) {
			var s standing
			if err := json.Unmarshal([]byte(q.run(t, "standing", "beta", "--json")), &s); err != nil {
				t.Fatal(err)
			}
			want = map[string]string{
				"t-quota":        fmt.Sprintf("%d of %d (%d left)", s.Quota.Used, s.Quota.Limit, s.Quota.Remaining),
				"t-quota-booked": strconv.FormatInt(s.Booked, 10),
				"t-scheduled":    strconv.Itoa(s.Tasks.Scheduled),
				"t-pending":      strconv.Itoa(s.Tasks.Pending),
				"t-hold":         "no",
				"t-policy":       "1/s burst 1 quota 5 per 24h0m0s",
			}
			for _, cause := range []string{"rate", "upstream", "quota", "hold", "concurrency"} {
				want["t-wait-"+cause] = strconv.Itoa(s.Waiting.ByCause[cause])
			}
			var got map[string]string
			eval(t, ctx, `Object.fromEntries(`+jsonString(keys(want))+`.map(k => [k, document.getElementById(k).textContent]))`, &got)
			var diff []string
			for k, v := range want {
				if got[k] != v {
					diff = append(diff, fmt.Sprintf("%s: page %q, CLI %q", k, got[k], v))
				}
			}
			return len(diff) == 0, strings.Join(diff, "\n")
		})
		if want["t-wait-quota"] != "15" || want["t-quota"] != "5 of 5 (0 left)" {
			t.Errorf("beta stands at %v, want its 15 tasks waiting for its used-up quota", want)
		}
		run(t, ctx, "open gamma's page", chromedp.Navigate(w.page+"#/tenant/gamma"))
		until(t, 10*time.Second, "gamma's hold, its 10 tasks waiting for it as standing --json says", func() (bool, string) {
			var hold, why, held string
			eval(t, ctx, `document.getElementById("t-hold").textContent`, &hold)
			eval(t, ctx, `document.getElementById("t-hold-why").textContent`, &why)
			eval(t, ctx, `document.getElementById("t-wait-hold").textContent`, &held)
			var s standing
			if err := json.Unmarshal([]byte(q.run(t, "standing", "gamma", "--json")), &s); err != nil {
				t.Fatal(err)
			}
			return strings.HasPrefix(hold, "yes, ") && strings.Contains(why, "429") && held == "10" && s.Waiting.ByCause["hold"] == 10,
				fmt.Sprintf("%s / %s / page %s, CLI %d waiting for the hold", hold, why, held, s.Waiting.ByCause["hold"])
		})
	})

	t.Run("RateChartFollowsThePolicy", func(t *testing.T) {
		run(t, ctx, "open acme's page", chromedp.Navigate(w.page+"#/tenant/acme"),
			chromedp.WaitVisible(chromedp.CSS(`body[data-loaded="tenant"]`)))
		until(t, 30*time.Second, "acme's tasks to start at about its 2/s", func() (bool, string) {
			var achieved string
			eval(t, ctx, `document.getElementById("t-achieved").textContent`, &achieved)
			r, _ := strconv.ParseFloat(strings.TrimSuffix(achieved, "/s"), 64)
			return r >= 1.5 && r <= 2.5, achieved
		})
		var policy string
		eval(t, ctx, `document.getElementById("t-policy-rate").textContent`, &policy)
		if policy != "2/s" {
			t.Errorf("chart's policy line %q, want 2/s", policy)
		}
		if *updateScreenshot {
			// a picture worth showing: a minute of history, with a policy
			// change half way
			seconds := func(n int) func() (bool, string) {
				return func() (bool, string) {
					var got int
					eval(t, ctx, `live ? live.started.filter(n => n > 0).length : 0`, &got)
					return got >= n, fmt.Sprint(got, " seconds")
				}
			}
			until(t, 60*time.Second, "30 s of starts", seconds(30))
			q.run(t, "policy", "set", "acme", "--rate", "4", "--burst", "4")
			until(t, 60*time.Second, "60 s of starts", seconds(60))
		}
		screenshot(t, ctx, "console.png")
	})

	t.Run("ActionWithTheFlag", func(t *testing.T) {
		run(t, ctx, "reset beta's quota",
			chromedp.Navigate(w.page+"#/tenant/beta"),
			chromedp.WaitVisible(chromedp.CSS("#act-reset-quota")),
			chromedp.Click(chromedp.CSS("#act-reset-quota")),
			chromedp.WaitVisible(chromedp.CSS("#confirm")),
			chromedp.Click(chromedp.CSS("#confirm-yes")))
		until(t, 10*time.Second, "the action's answer", func() (bool, string) {
			var res string
			eval(t, ctx, `document.getElementById("act-result").textContent`, &res)
			return strings.HasPrefix(res, "quota reset for beta; 15 parked tasks brought back"), res
		})
		until(t, 20*time.Second, "beta's tasks to run on its fresh quota", func() (bool, string) {
			s := q.status(t)["beta"]
			return s.Quota != nil && s.Quota.Used == 5 && s.Waiting.Other == 10, fmt.Sprintf("%+v", s)
		})
		if logs := w.logs.String(); !strings.Contains(logs, "action=reset-quota tenant=beta") {
			t.Errorf("the action is not in the worker's log:\n%s", logs)
		}
	})

	t.Run("NoActionsWithoutTheFlag", func(t *testing.T) {
		ro := startWorker(t, workerBin, env, "--concurrency", "1")
		run(t, ctx, "open beta's page on a worker without --console-actions", chromedp.Navigate(ro.page+"#/tenant/beta"),
			chromedp.WaitVisible(chromedp.CSS(`body[data-loaded="tenant"]`)))
		var hidden bool
		var mode string
		var status int
		eval(t, ctx, `document.getElementById("actions").hidden`, &hidden)
		eval(t, ctx, `document.getElementById("mode").textContent`, &mode)
		eval(t, ctx, `fetch("api/tenant/reset-quota?id=beta", {method: "POST"}).then(r => r.status)`, &status)
		if !hidden || mode != "read-only" || status != 403 {
			t.Errorf("actions hidden %v, mode %q, a POST answered %d; want hidden, read-only, 403", hidden, mode, status)
		}
	})
}

// screenshot saves the page's picture: into docs/ with -update-screenshot,
// else into the test's temporary directory; either way it must be a PNG.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	dir := t.TempDir()
	if *updateScreenshot {
		dir = filepath.Join(repoRoot, "docs")
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
