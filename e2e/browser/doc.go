// Package browser tests quotaq-worker's web page in a real browser: headless
// Chromium, driven by chromedp, against the real quotaq-worker and
// quotaq-enqueue binaries on a private redis-server with a throttled
// backlog. It is its own module so that chromedp stays out of quotaq's
// go.mod; scripts/test.sh runs it and installs Debian's chromium when it is
// missing. Run it alone with
//
//	cd e2e/browser && go test -count=1 ./...
//
// and add -update-screenshot to write the page's picture the README shows
// (docs/console.png, docs/console-table.png).
package browser
