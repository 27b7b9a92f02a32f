package httplimit

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"testing"

	"github.com/quotaq/quotaq/throttle"
)

// Made-up API keys do not escape the per-address limit: only keys the
// application gave out get a limit of their own.
func TestMadeUpAPIKeysShareTheAddressLimit(t *testing.T) {
	t.Parallel()
	known := map[string]bool{"k-paying": true}
	b := setup(t, WithPolicy(throttle.Policy{Rate: 0.5, Burst: 5}),
		WithKey(ValidAPIKey("X-API-Key", func(_ *http.Request, k string) bool { return known[k] }), ClientIP()))
	passed := 0
	for range 15 {
		r := request("198.51.100.7:40000")
		r.Header.Set("X-API-Key", rand.Text()) // a new made-up key each time
		if b.do(r).Code == http.StatusOK {
			passed++
		}
	}
	if passed != 5 {
		t.Errorf("%d of 15 requests with made-up keys passed, want 5 (the address's burst)", passed)
	}
	r := request("198.51.100.7:40000")
	r.Header.Set("X-API-Key", "k-paying")
	if w := b.do(r); w.Code != http.StatusOK {
		t.Errorf("a known key from the same address: %d, want 200 (its own limit)", w.Code)
	}
	if got, want := b.m.Key(r), APIKeyID("k-paying"); got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
}

// IPv6 clients are limited per /64 by default, since one host can use a new
// address of its /64 for every request; WithIPv6Prefix changes the grouping.
func TestIPv6ClientsAreGroupedByPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		opts   []Option
		passed int // of 15 requests from 15 addresses in one /64
		key    string
	}{
		{"DefaultIsA64", nil, 5, "ip:2001:db8:1:2::/64"},
		{"A56", []Option{WithIPv6Prefix(56)}, 5, "ip:2001:db8:1::/56"},
		{"EachAddress", []Option{WithIPv6Prefix(128)}, 15, "ip:2001:db8:1:2::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, append([]Option{WithPolicy(throttle.Policy{Rate: 0.5, Burst: 5})}, tt.opts...)...)
			passed := 0
			for i := 1; i <= 15; i++ {
				if b.do(request(fmt.Sprintf("[2001:db8:1:2::%x]:40000", i))).Code == http.StatusOK {
					passed++
				}
			}
			if passed != tt.passed {
				t.Errorf("%d of 15 requests from one /64 passed, want %d", passed, tt.passed)
			}
			if got := b.m.Key(request("[2001:db8:1:2::1]:40000")); got != tt.key {
				t.Errorf("Key = %q, want %q", got, tt.key)
			}
			if w := b.do(request("[2001:db8:2::1]:40000")); w.Code != http.StatusOK {
				t.Errorf("another prefix: %d, want 200 (a limit of its own)", w.Code)
			}
			if got := b.m.Key(request("192.0.2.1:40000")); got != "ip:192.0.2.1" {
				t.Errorf("IPv4 Key = %q, want it ungrouped", got)
			}
		})
	}
}

func TestIPv6PrefixOutOfRangeIsRefused(t *testing.T) {
	t.Parallel()
	for _, bits := range []int{0, -1, 129} {
		if _, err := New(nil, WithIPv6Prefix(bits)); err == nil {
			t.Errorf("New(WithIPv6Prefix(%d)) = nil error, want one", bits)
		}
	}
}
