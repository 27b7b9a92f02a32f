package httplimit

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func request(remote string, hdr ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	tests := []struct{ remote, want string }{
		{"192.0.2.1:5555", "ip:192.0.2.1"},
		{"[2001:db8::1]:443", "ip:2001:db8::1"},
		{"[::ffff:192.0.2.1]:1", "ip:192.0.2.1"},
		{"[fe80::1%eth0]:1", "ip:fe80::1"},
		{"192.0.2.9", "ip:192.0.2.9"},
		{"@", "ip:unknown"},
		{"", "ip:unknown"},
		{"not an address:80", "ip:unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			t.Parallel()
			// The header is ignored: anyone can send it.
			if got := ClientIP()(request(tt.remote, "X-Forwarded-For", "198.51.100.1")); got != tt.want {
				t.Errorf("ClientIP(%q) = %q, want %q", tt.remote, got, tt.want)
			}
		})
	}
}

func TestForwardedFor(t *testing.T) {
	t.Parallel()
	trusted, err := ParsePrefixes("10.0.0.0/8, 2001:db8:ffff::/48, 192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	kf := ForwardedFor(trusted...)
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"UntrustedPeerHeaderIgnored", "203.0.113.5:1", []string{"198.51.100.1"}, "ip:203.0.113.5"},
		{"TrustedPeerNoHeader", "10.1.1.1:1", nil, "ip:10.1.1.1"},
		{"OneProxy", "10.1.1.1:1", []string{"198.51.100.1"}, "ip:198.51.100.1"},
		{"SingleTrustedAddress", "192.0.2.7:1", []string{"198.51.100.1"}, "ip:198.51.100.1"},
		{"ClientForgesLeftmostEntries", "10.1.1.1:1", []string{"1.1.1.1, 2.2.2.2, 198.51.100.1"}, "ip:198.51.100.1"},
		{"ChainOfTrustedProxies", "10.1.1.1:1", []string{"198.51.100.1, 10.2.2.2, 10.3.3.3"}, "ip:198.51.100.1"},
		{"HeaderSplitOverFields", "10.1.1.1:1", []string{"6.6.6.6, 198.51.100.1", "10.2.2.2"}, "ip:198.51.100.1"},
		{"AllHopsTrusted", "10.1.1.1:1", []string{"10.9.9.9, 10.2.2.2"}, "ip:10.9.9.9"},
		{"GarbageBehindTrustedHop", "10.1.1.1:1", []string{"nonsense, 10.2.2.2"}, "ip:10.2.2.2"},
		{"GarbageNextToPeer", "10.1.1.1:1", []string{"198.51.100.1, ???"}, "ip:10.1.1.1"},
		{"EmptyEntries", "10.1.1.1:1", []string{" , "}, "ip:10.1.1.1"},
		{"EntryWithPort", "10.1.1.1:1", []string{"198.51.100.1:4711"}, "ip:198.51.100.1"},
		{"IPv6Entry", "[2001:db8:ffff::2]:1", []string{"[2001:db8:1::9]:80"}, "ip:2001:db8:1::9"},
		{"IPv6Bracketed", "10.1.1.1:1", []string{"[2001:db8:1::9]"}, "ip:2001:db8:1::9"},
		{"MappedIPv4", "10.1.1.1:1", []string{"::ffff:198.51.100.1"}, "ip:198.51.100.1"},
		{"UnknownPeer", "@", []string{"198.51.100.1"}, "ip:unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := request(tt.remote)
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := kf(r); got != tt.want {
				t.Errorf("ForwardedFor: remote %q, X-Forwarded-For %q: got %q, want %q", tt.remote, tt.xff, got, tt.want)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"", nil, ""},
		{" 10.0.0.0/8 ,, ::1 ", []string{"10.0.0.0/8", "::1/128"}, ""},
		{"10.1.2.3/8", []string{"10.0.0.0/8"}, ""},
		{"::ffff:10.0.0.1", []string{"10.0.0.1/32"}, ""},
		{"10.0.0.0/8,proxy.local", nil, `"proxy.local"`},
		{"10.0.0.0/33", nil, `"10.0.0.0/33"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePrefixes(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "httplimit: ") {
					t.Fatalf("ParsePrefixes(%q) error = %v, want one naming %s", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParsePrefixes(%q) = %v, want %v", tt.in, got, tt.want)
			}
			for i := range got {
				if got[i] != netip.MustParsePrefix(tt.want[i]) {
					t.Errorf("ParsePrefixes(%q)[%d] = %v, want %v", tt.in, i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestAPIKey(t *testing.T) {
	t.Parallel()
	kf := APIKey("X-API-Key")
	if got := kf(request("192.0.2.1:1")); got != "" {
		t.Errorf("no header: key %q, want \"\" (left to the next KeyFunc)", got)
	}
	if got := kf(request("192.0.2.1:1", "X-API-Key", "  ")); got != "" {
		t.Errorf("blank header: key %q, want \"\"", got)
	}
	got := kf(request("192.0.2.1:1", "X-API-Key", "secret-123"))
	if got != APIKeyID("secret-123") || strings.Contains(got, "secret") || !strings.HasPrefix(got, "key:") || len(got) != 4+64 {
		t.Errorf("key %q: want APIKeyID(secret) = key:<sha256 hex>, never the key itself", got)
	}
	if APIKeyID("a") == APIKeyID("b") {
		t.Error("distinct API keys share an id")
	}
}
