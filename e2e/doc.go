// Package e2e holds quotaq's process-level tests: real redis-server
// processes (a single node, a 3-master Cluster, a TLS server with an ACL
// user), the built quotaq-worker and quotaq-enqueue binaries, and the faults
// a deployment meets (a worker killed mid-task, Redis restarted or
// unreachable, clocks that disagree, many workers and tenants at once).
//
// The package has tests only. `go test ./e2e` (part of `bash
// scripts/test.sh`) runs the short variant, bounded to well under three
// minutes on two cores, everything on loopback. QUOTAQ_E2E_LONG=1 (or
// -e2e.long) runs the long variant: the load test with 100,000 tasks.
//
// Every scenario prints a line of figures: tasks enqueued, processed, lost
// and duplicated.
package e2e
