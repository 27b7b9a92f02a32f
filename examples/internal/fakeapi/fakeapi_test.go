package fakeapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quotaq/quotaq/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func TestPlanPastItsLimitIs429(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	s, err := New(context.Background(), rdb, Config{
		Prefix: prefix,
		Plan:   Plan{N: 2, Per: time.Hour},
		Plans:  map[string]Plan{"acme": {N: 3, Per: time.Hour}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	call := func(key string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/work", nil)
		if key != "" {
			req.Header.Set(KeyHeader, key)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp
	}
	steps := []struct {
		key   string
		want  int
		limit string
	}{
		{"acme", 200, "3"}, {"acme", 200, "3"}, {"acme", 200, "3"}, {"acme", 429, "3"},
		{"globex", 200, "2"}, {"globex", 200, "2"}, {"globex", 429, "2"},
		{"", 200, "2"}, // no key: limited by address
	}
	for i, st := range steps {
		resp := call(st.key)
		if resp.StatusCode != st.want || resp.Header.Get("X-RateLimit-Limit") != st.limit {
			t.Fatalf("step %d (%q): status %d limit %q, want %d %q", i, st.key, resp.StatusCode,
				resp.Header.Get("X-RateLimit-Limit"), st.want, st.limit)
		}
		if st.want == 429 && resp.Header.Get("Retry-After") == "" {
			t.Errorf("step %d: 429 without Retry-After", i)
		}
	}
	want := map[string]KeyStats{"acme": {3, 1}, "globex": {2, 1}, "(no key)": {1, 0}}
	resp, err := srv.Client().Get(srv.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]KeyStats
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("/stats = %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w || s.Stats()[k] != w {
			t.Errorf("stats of %q: /stats %v, Stats() %v, want %v", k, got[k], s.Stats()[k], w)
		}
	}
}

func TestParsePlans(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    map[string]Plan
		wantErr string
	}{
		{"", map[string]Plan{}, ""},
		{"acme=25/1s, globex = 600/m,initech=5/s", map[string]Plan{
			"acme": {25, time.Second}, "globex": {600, time.Minute}, "initech": {5, time.Second}}, ""},
		{"acme", nil, `"acme": want key=N/DURATION`},
		{"=5/s", nil, `want key=N/DURATION`},
		{"acme=5", nil, `plan "5": want N/DURATION`},
		{"acme=0/s", nil, `"0" is not a whole number`},
		{"acme=x/s", nil, `"x" is not a whole number`},
		{"acme=5/100ms", nil, `window "100ms" must be a duration of at least 1s`},
		{"acme=5/forever", nil, `window "forever"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePlans(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePlans(%q) error %v, want one containing %s", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParsePlans(%q) = %v, want %v", tt.in, got, tt.want)
			}
			for k, p := range tt.want {
				if got[k] != p {
					t.Errorf("%s: %v, want %v", k, got[k], p)
				}
			}
		})
	}
	if p := (Plan{N: 25, Per: time.Second}).Policy(); p.Rate != 25 || p.Burst != 25 {
		t.Errorf("25/s as a policy: %v", p)
	}
}
