package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// TestWebPageOnTheMetricsAddress: the worker serves the web page at /ui/
// (and / leads there) on --metrics-addr, read-only unless
// --console-actions; --console=false turns it off.
func TestWebPageOnTheMetricsAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		page    int
		actions string
	}{
		{"ReadOnlyByDefault", nil, 200, `"actions":false`},
		{"ActionsWithTheFlag", []string{"--console-actions"}, 200, `"actions":true`},
		{"Off", []string{"--console=false"}, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb, prefix := redistest.Client(t)
			if err := throttle.New(rdb, throttle.WithPrefix(prefix)).SetPolicy(context.Background(), "acme", throttle.PerSecond(3)); err != nil {
				t.Fatal(err)
			}
			w := startWorker(t, append([]string{"--redis-url", "redis://" + redistest.Addr(t), "--queues", "q-" + prefix, "--prefix", prefix}, tt.args...), nil)
			if code, body := w.get(t, "/"); code != tt.page || code == 200 && !strings.Contains(body, "<title>quotaq</title>") {
				t.Errorf("/ = %d, want %d and the page", code, tt.page)
			}
			if tt.page != 200 {
				return
			}
			if _, body := w.get(t, "/ui/api/meta"); !strings.Contains(body, tt.actions) {
				t.Errorf("/ui/api/meta = %s, want %s", body, tt.actions)
			}
			if code, body := w.get(t, "/ui/api/tenant?id=acme"); code != http.StatusOK || !strings.Contains(body, `"rate":3,"burst":3`) {
				t.Errorf("/ui/api/tenant?id=acme = %d %s, want acme's policy (the worker's --prefix)", code, body)
			}
		})
	}
}
