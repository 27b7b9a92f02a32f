// Package wait lets tests wait for a condition with a deadline instead of
// sleeping for a guessed time.
package wait

import (
	"testing"
	"time"
)

// For polls cond every few milliseconds until it holds, and fails the test
// when it still does not after timeout. what names the condition in the
// failure message ("every task processed").
func For(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
