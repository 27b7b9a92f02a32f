#!/usr/bin/env bash
# Runs quotaq's whole test suite: unit tests on miniredis and integration tests
# on a real redis-server, which the tests start themselves on free loopback ports.
# Installs redis-server (Debian package) first when it is missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: redis-server is missing; installing the Debian package redis-server" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
  else
    echo "test.sh: redis-server is missing: install it (apt-get install redis-server, brew install redis) and run again" >&2
    exit 1
  fi
fi

# The web page's browser test drives Debian's chromium (headless); under CI
# it fails without one.
if ! command -v chromium >/dev/null 2>&1 && [ -z "${QUOTAQ_CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: chromium is missing; installing the Debian package chromium" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "test.sh: chromium is missing: install it (apt-get install chromium) for the web page's browser test" >&2
  fi
fi

go vet ./...
go test -count=1 -timeout 9m "$@" ./...

# The docker-compose check lives in its own module (compose-go's dependencies
# stay out of the library's go.mod).
(cd internal/composecheck && go vet ./... && go test -count=1 -timeout 5m ./...)

# So does the benchmark harness (peers such as redis_rate stay out of go.mod):
# its smoke tests keep it building; the benchmarks themselves are run by hand
# (BENCHMARKS.md).
(cd bench && go vet ./... && go test -count=1 -timeout 5m ./...)

# The Grafana dashboard and the alert rules in deploy/ are checked against a
# running quotaq-worker's /metrics with Prometheus's own parsers, also in a
# module of their own (prometheus/prometheus stays out of go.mod).
(cd deploy && go vet ./... && go test -count=1 -timeout 5m ./...)

# The web page's test in headless Chromium is its own module too (chromedp
# stays out of go.mod).
(cd e2e/browser && go vet ./... && go test -count=1 -timeout 5m ./...)
