package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/quotaq/quotaq/internal/cmdline"
)

const healthcheckHelp = `Usage:
  quotaq-worker healthcheck [flags]

Asks the worker's /healthz on --metrics-addr, as a container's HEALTHCHECK
does in an image without a shell or curl: exit 0 when the worker answers that
it reaches Redis, 1 when it does not answer or says Redis is unavailable, with
one line saying which. It reads the same flags, environment and config file
as the worker, so the same settings find the same address; an address that
listens on every interface (:2112) is asked on loopback. It waits at most
` + "3s" + ` for the answer.
`

// healthcheckTimeout bounds the whole check; container runtimes give a
// check 30s by default.
const healthcheckTimeout = 3 * time.Second

// healthcheck is `quotaq-worker healthcheck`.
func healthcheck(ctx context.Context, args []string, env cmdline.Env, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, env, io.Discard)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, healthcheckHelp)
		return 0
	case errors.Is(err, errVersion):
		fmt.Fprintln(stdout, cmdline.Version("quotaq-worker"))
		return 0
	case err != nil:
		return usageError(stderr, err)
	case o.metricsAddr == "":
		return usageError(stderr, errors.New("healthcheck: --metrics-addr is empty, so the worker serves no /healthz: give the worker and the check the same --metrics-addr"))
	}
	url, err := healthzURL(o.metricsAddr)
	if err != nil {
		return usageError(stderr, fmt.Errorf("healthcheck: --metrics-addr %q: %v", o.metricsAddr, err))
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return usageError(stderr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "quotaq-worker healthcheck: unhealthy: %s\n", cmdline.OneLine(err.Error()))
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	first, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "quotaq-worker healthcheck: unhealthy: %s answered %s: %s\n", url, resp.Status, first)
		return 1
	}
	fmt.Fprintf(stdout, "quotaq-worker healthcheck: healthy: %s answered %s\n", url, first)
	return 0
}

// healthzURL is the /healthz URL of a worker listening on addr: an address
// on every interface (":2112", "0.0.0.0:2112", "[::]:2112") is asked on
// loopback.
func healthzURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}
