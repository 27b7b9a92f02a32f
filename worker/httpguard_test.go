package worker_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/worker"
)

func TestParseAllowList(t *testing.T) {
	t.Parallel()
	for _, good := range []string{"api.example.com", "*.example.com", "localhost", "203.0.113.9", "::1", "[::1]", "10.0.0.0/8", "2001:db8::/32", ""} {
		if _, err := worker.ParseAllowList(good); err != nil {
			t.Errorf("ParseAllowList(%q) = %v, want nil", good, err)
		}
	}
	for _, bad := range []string{"http://api.example.com", "api.example.com:443", "10.0.0.0/33", "*.", "a..b", "*", "exa mple.com", "-a.com"} {
		if _, err := worker.ParseAllowList(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseAllowList(%q) = %v, want an error naming it", bad, err)
		}
	}
}

// callTo runs one http:call task to url with header through h and returns
// the handler's error.
func callTo(t *testing.T, h asynq.Handler, url string, header map[string]string) error {
	t.Helper()
	task, err := worker.NewHTTPCallTask(worker.HTTPCall{Tenant: "acme", URL: url, Header: header})
	if err != nil {
		t.Fatal(err)
	}
	// an allowed address that does not answer (169.254.169.254 off a
	// cloud) gives up soon
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return h.ProcessTask(ctx, task)
}

// headerLog is an upstream that records the headers it was sent.
type headerLog struct {
	mu   sync.Mutex
	seen []http.Header
}

func (l *headerLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, r.Header.Clone())
}

func (l *headerLog) last() http.Header {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) == 0 {
		return nil
	}
	return l.seen[len(l.seen)-1]
}

// redirector answers every request with a 302 to target.
func redirector(t *testing.T, target string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.RedirectHandler(target, http.StatusFound))
	t.Cleanup(srv.Close)
	return srv
}

// http:call reaches loopback by default and when allowed, never link-local
// or cloud metadata addresses unless an IP entry names them, and checks
// every redirect and the address each name resolves to.
func TestHTTPCallAllowList(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(&headerLog{})
	t.Cleanup(upstream.Close)
	port := upstream.URL[strings.LastIndex(upstream.URL, ":")+1:]
	byName := "http://localhost:" + port + "/"
	byIP := upstream.URL + "/"

	allow := func(entries ...string) *worker.AllowList {
		a, err := worker.ParseAllowList(entries...)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		name   string
		allow  *worker.AllowList
		url    string
		denied bool
	}{
		{"LoopbackByDefault", nil, byIP, false},
		{"LoopbackByNameByDefault", nil, byName, false},
		{"MetadataDeniedByDefault", nil, "http://169.254.169.254/latest/meta-data/", true},
		{"LinkLocalDeniedByDefault", nil, "http://169.254.170.2/v2/credentials", true},
		{"IPv6MetadataDeniedByDefault", nil, "http://[fd00:ec2::254]/latest/meta-data/", true},
		{"IPv4MappedMetadataDenied", nil, "http://[::ffff:169.254.169.254]/", true},
		{"IPv6LinkLocalDenied", nil, "http://[fe80::1]/", true},
		{"IPv6LinkLocalWithAZoneDenied", nil, "http://[fe80::1%25eth0]/", true},
		{"MetadataThroughNAT64Denied", nil, "http://[64:ff9b::a9fe:a9fe]/", true},
		{"UnspecifiedDenied", nil, "http://0.0.0.0:" + port + "/", true},
		{"AlibabaMetadataDenied", nil, "http://100.100.100.200/latest/meta-data/", true},
		{"LoopbackAllowedByCIDR", allow("127.0.0.0/8"), byIP, false},
		{"LoopbackNameAllowedByCIDR", allow("127.0.0.0/8"), byName, false},
		{"LoopbackAllowedByName", allow("localhost"), byName, false},
		{"NameNotOnTheList", allow("api.example.com"), byName, true},
		{"IPNotOnTheList", allow("api.example.com", "localhost"), byIP, true},
		// the name passes the URL check (the list has CIDRs it might
		// resolve into), and the address it resolves to is refused
		{"ResolvedAddressNotOnTheList", allow("10.0.0.0/8"), byName, true},
		{"WildcardDoesNotMatchTheBareName", allow("*.localhost"), byName, true},
		{"MetadataStillDeniedWithANameList", allow("localhost"), "http://169.254.169.254/", true},
		{"MetadataAllowedByAnIPEntry", allow("169.254.169.254"), "http://169.254.169.254:1/", false},
		{"RedirectToMetadataDenied", nil, redirector(t, "http://169.254.169.254/latest/meta-data/").URL, true},
		{"RedirectToAnotherHostReChecked", allow("localhost"), strings.Replace(redirector(t, byIP).URL, "127.0.0.1", "localhost", 1), true},
		{"RedirectToAnAllowedHostFollowed", allow("127.0.0.0/8"), redirector(t, byIP).URL, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := worker.NewHTTPCallHandler(nil, worker.WithAllowList(tt.allow))
			err := callTo(t, h, tt.url, nil)
			var de *worker.DeniedHostError
			denied := errors.As(err, &de)
			if denied != tt.denied {
				t.Fatalf("err = %v; want denied %v", err, tt.denied)
			}
			if denied && !errors.Is(err, asynq.SkipRetry) {
				t.Errorf("err = %v, want it archived (SkipRetry)", err)
			}
			if !tt.denied && err != nil && tt.name != "MetadataAllowedByAnIPEntry" {
				t.Errorf("err = %v, want nil", err)
			}
		})
	}
}

// A redirect to another host carries none of the task's credentials; one to
// the same host keeps them.
func TestHTTPCallRedirectDropsCredentialsAcrossHosts(t *testing.T) {
	t.Parallel()
	log := &headerLog{}
	other := httptest.NewServer(log)
	t.Cleanup(other.Close)
	header := map[string]string{
		"Authorization": "Bearer secret", "Cookie": "sid=secret", "X-API-Key": "secret",
		"Proxy-Authorization": "Basic secret", "Accept": "application/json",
	}
	h := worker.NewHTTPCallHandler(nil)

	if err := callTo(t, h, redirector(t, other.URL+"/landed").URL, header); err != nil {
		t.Fatal(err)
	}
	got := log.last()
	for k := range header {
		if k != "Accept" && got.Get(k) != "" {
			t.Errorf("a redirect to another host carried %s: %q", k, got.Get(k))
		}
	}
	if got.Get("Accept") != "application/json" {
		t.Errorf("Accept = %q after the redirect, want it kept", got.Get("Accept"))
	}

	mux := http.NewServeMux()
	mux.Handle("/landed", log)
	mux.Handle("/", http.RedirectHandler("/landed", http.StatusFound))
	same := httptest.NewServer(mux)
	t.Cleanup(same.Close)
	if err := callTo(t, h, same.URL+"/start", header); err != nil {
		t.Fatal(err)
	}
	if got := log.last(); got.Get("X-API-Key") != "secret" || got.Get("Authorization") != "Bearer secret" {
		t.Errorf("a redirect on the same host lost the task's headers: %v", got)
	}
}
