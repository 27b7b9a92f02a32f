package throttle_test

import (
	"context"
	"strings"
	"testing"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

func TestValidateTenant(t *testing.T) {
	t.Parallel()
	good := []string{"acme", "a", strings.Repeat("x", 128), "api:stripe", "{braces}", "ünïcode", "with space", "100%"}
	for _, id := range good {
		if err := throttle.ValidateTenant(id); err != nil {
			t.Errorf("ValidateTenant(%q) = %v, want nil", id, err)
		}
	}
}

// Hostile ids must never reach another tenant's keys: each of these is
// exhausted in turn while all the others keep their full bucket.
func TestHostileTenantIDsStayApart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	l := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.01, Burst: 1}))
	ids := []string{
		"a", "{a}", "a}", "{a", "a}:tb", "a:tb", "}{", "%7Ba%7D", "a%", "%", ":", "{}",
		prefix, prefix + ":{a}:tb", "a}:policy", "x}{a",
	}
	for i, id := range ids {
		if r := mustAllowN(t, l, id, 1); !r.Allowed {
			t.Fatalf("id %q (#%d) found its bucket already used: an earlier id reached its keys", id, i)
		}
	}
	// each id's keys carry exactly one hash tag: the escaped id
	for _, k := range keysWith(t, c, prefix) {
		open, close := strings.Index(k, "{"), strings.Index(k, "}")
		if strings.Count(k, "{") != 1 || strings.Count(k, "}") != 1 || close < open {
			t.Errorf("key %q has more than one hash tag", k)
		}
	}
	// a policy for a hostile id applies to it alone
	if err := l.SetPolicy(ctx, "a}", throttle.Policy{Rate: 0.01, Burst: 9}); err != nil {
		t.Fatal(err)
	}
	if p, explicit, _ := l.GetPolicy(ctx, "a"); explicit || p.Burst != 1 {
		t.Fatalf("policy of %q leaked to %q: %+v", "a}", "a", p)
	}
	got, err := l.Tenants(ctx)
	if err != nil || len(got) != 1 || got[0] != "a}" {
		t.Fatalf("Tenants = %q, %v; want [a}]", got, err)
	}
}
