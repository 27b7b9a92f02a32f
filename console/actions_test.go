package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/quotaq/quotaq/throttle"
)

// post sends an action as the page would, with change applied to the
// request first, and returns the status and the answer's message or error.
func post(t *testing.T, srv *httptest.Server, token, path, body string, change func(*http.Request)) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", srv.URL)
	req.Header.Set(TokenHeader, token)
	req.Header.Set("Content-Type", "application/json")
	if change != nil {
		change(req)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var v struct{ Message, Error string }
	_ = json.NewDecoder(res.Body).Decode(&v)
	return res.StatusCode, v.Message + v.Error
}

// metaToken reads the token the page gets.
func metaToken(t *testing.T, srv *httptest.Server) (actions bool, token string) {
	t.Helper()
	var m struct {
		Actions bool
		Token   string
	}
	getJSON(t, srv.URL+"/ui/api/meta", &m)
	return m.Actions, m.Token
}

func TestActionsAreOffByDefault(t *testing.T) {
	t.Parallel()
	srv, b := setup(t)
	actions, token := metaToken(t, srv)
	if actions || token != "" {
		t.Errorf("meta says actions %v, token %q; want off and no token", actions, token)
	}
	if err := b.lim.SetPolicy(context.Background(), "acme", throttle.PerSecond(1)); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"reset-quota", "release-hold", "policy"} {
		code, msg := post(t, srv, b.c.token, "/ui/api/tenant/"+path+"?id=acme", `{"rate":5}`, nil)
		if code != http.StatusForbidden || !strings.Contains(msg, "--console-actions") {
			t.Errorf("%s with actions off: %d %q, want 403 saying how to turn them on", path, code, msg)
		}
	}
	if p, _, _ := b.lim.GetPolicy(context.Background(), "acme"); p != throttle.PerSecond(1) {
		t.Errorf("policy %v changed with actions off", p)
	}
}

func TestActionsComeOnlyFromThePage(t *testing.T) {
	t.Parallel()
	srv, b := setup(t, WithActions(true))
	_, token := metaToken(t, srv)
	tests := []struct {
		name   string
		change func(*http.Request)
		want   string
	}{
		{"AnotherOrigin", func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }, "origin"},
		{"NoOrigin", func(r *http.Request) { r.Header.Del("Origin") }, "no origin"},
		{"NoToken", func(r *http.Request) { r.Header.Del(TokenHeader) }, "token"},
		{"WrongToken", func(r *http.Request) { r.Header.Set(TokenHeader, strings.Repeat("0", 32)) }, "token"},
		{"ARebindingName", func(r *http.Request) {
			r.Host = "evil.example:80"
			r.Header.Set("Origin", "http://evil.example:80")
		}, "not an IP address"},
	}
	t.Run("Refused", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				code, msg := post(t, srv, token, "/ui/api/tenant/reset-quota?id=acme", "", tt.change)
				want := http.StatusForbidden
				if tt.name == "ARebindingName" {
					want = http.StatusMisdirectedRequest // refused before it reaches an action
				}
				if code != want || !strings.Contains(msg, tt.want) {
					t.Errorf("%d %q, want %d saying %q", code, msg, want, tt.want)
				}
			})
		}
	})
	if !strings.Contains(b.logs.String(), "action refused") {
		t.Errorf("refusals not logged: %s", b.logs)
	}
}

func TestActionsDoWhatTheCLIDoes(t *testing.T) {
	t.Parallel()
	srv, b := setup(t, WithActions(true))
	_, token := metaToken(t, srv)
	ctx := context.Background()
	if err := b.lim.SetPolicy(ctx, "acme", throttle.Policy{Rate: 0.001, Burst: 5, Quota: 3}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := b.lim.Allow(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.lim.Hold(ctx, "acme", 60e9); err != nil {
		t.Fatal(err)
	}

	code, msg := post(t, srv, token, "/ui/api/tenant/reset-quota?id=acme", "", nil)
	st, _ := b.lim.Standing(ctx, "acme")
	if code != 200 || st.QuotaRemaining != 3 && st.QuotaRemaining != -1 {
		t.Errorf("reset-quota: %d %q; quota left %d, want 3", code, msg, st.QuotaRemaining)
	}
	if st.HoldLeft == 0 {
		t.Error("reset-quota lifted the hold")
	}

	// a task booked behind the pause keeps its booking when the hold is released
	if r, err := b.lim.Reserve(ctx, throttle.Request{IDs: []string{"acme"}, N: 1, Ticket: "job-1"}); err != nil || !r.OK || r.Delay == 0 {
		t.Fatalf("Reserve while held: %+v, %v; want a booking after the pause", r, err)
	}
	code, msg = post(t, srv, token, "/ui/api/tenant/release-hold?id=acme", "", nil)
	st, _ = b.lim.Standing(ctx, "acme")
	if code != 200 || st.HoldLeft != 0 || st.Booked != 1 || !strings.Contains(msg, "runs at its policy's rate again") {
		t.Errorf("release-hold: %d %q; hold left %s, %d booked; want no hold, the booking kept", code, msg, st.HoldLeft, st.Booked)
	}

	code, msg = post(t, srv, token, "/ui/api/tenant/policy?id=acme", `{"rate":2,"quota_period":"24h"}`, nil)
	p, _, _ := b.lim.GetPolicy(ctx, "acme")
	want := throttle.Policy{Rate: 2, Burst: 5, Quota: 3, QuotaPeriod: 24 * 3600e9}
	if code != 200 || p != want || !strings.Contains(msg, "was 0.001/s") {
		t.Errorf("policy: %d %q; policy %v, want %v", code, msg, p, want)
	}

	for _, body := range []string{`{"burst":0}`, `{"quota_period":"daily"}`, `{"colour":"red"}`, `not json`} {
		code, msg = post(t, srv, token, "/ui/api/tenant/policy?id=acme", body, nil)
		if code != http.StatusBadRequest || msg == "" {
			t.Errorf("policy %s: %d %q, want 400 with the reason", body, code, msg)
		}
	}
	if p2, _, _ := b.lim.GetPolicy(ctx, "acme"); p2 != want {
		t.Errorf("a refused change wrote %v", p2)
	}
	logs := b.logs.String()
	for _, action := range []string{"action=reset-quota", "action=release-hold", "action=set-policy"} {
		if !strings.Contains(logs, action+" tenant=acme") {
			t.Errorf("%s not logged with its tenant:\n%s", action, logs)
		}
	}
}

// TestActionsThroughAProxy: behind an authenticating proxy that serves the
// page under its own name, kept in Host and Origin, an action from the
// page is accepted once that name is allowed, and refused otherwise.
func TestActionsThroughAProxy(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts []Option
		want int
	}{
		{"Allowed", []Option{WithActions(true), WithAllowedHosts("console.corp")}, http.StatusOK},
		{"NotAllowed", []Option{WithActions(true)}, http.StatusMisdirectedRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := setup(t, tt.opts...)
			_, token := metaToken(t, srv)
			code, msg := post(t, srv, token, "/ui/api/tenant/reset-quota?id=acme", "", func(r *http.Request) {
				r.Host = "console.corp"
				r.Header.Set("Origin", "https://console.corp")
			})
			if code != tt.want {
				t.Errorf("%d %q, want %d", code, msg, tt.want)
			}
		})
	}
}
