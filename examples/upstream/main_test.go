package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"Help", []string{"--help"}, 0, "-plans key=N/DURATION"},
		{"BadPlan", []string{"--plan", "ten"}, 2, `--plan: fakeapi: plan "ten": want N/DURATION`},
		{"BadPlans", []string{"--plans", "acme=5/10ms"}, 2, `window "10ms" must be a duration of at least 1s`},
		{"UnknownFlag", []string{"--nope"}, 2, "flag provided but not defined: -nope"},
		{"Argument", []string{"extra"}, 2, `unexpected argument "extra"`},
		{"NegativeLatency", []string{"--latency", "-1s"}, 2, "--latency -1s must not be negative"},
		{"BadRedisURL", []string{"--redis-url", "http://x"}, 2, "redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			code := run(context.Background(), tt.args, env(nil), &out, nil)
			if code != tt.code || !strings.Contains(out.String(), tt.want) {
				t.Errorf("run(%q) = %d, output:\n%s\nwant %d and %q", tt.args, code, out.String(), tt.code, tt.want)
			}
		})
	}
}

func TestServesAndRefuses(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	done := make(chan int, 1)
	var out bytes.Buffer
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--prefix", redistest.Prefix(t), "--plans", "acme=2/1h"},
			env(map[string]string{"REDIS_URL": "redis://" + redistest.Addr(t) + "/0"}), &out,
			func(a string) { addrc <- a })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case code := <-done:
		t.Fatalf("exited with %d before listening:\n%s", code, out.String())
	case <-time.After(30 * time.Second):
		t.Fatal("not listening after 30 s")
	}
	var codes []int
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/work", nil)
		req.Header.Set("X-API-Key", "acme")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if fmt.Sprint(codes) != "[200 200 429]" {
		t.Errorf("statuses %v, want [200 200 429]", codes)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit code %d after cancel, want 0:\n%s", code, out.String())
	}
}
