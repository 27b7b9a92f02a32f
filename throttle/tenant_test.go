package throttle_test

import (
	"context"
	"errors"
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
	for _, id := range []string{"", "a\x00", "upstream:acme", throttle.Upstream("x"), "upstream:"} {
		if err := throttle.ValidateTenant(id); !errors.Is(err, throttle.ErrInvalidTenant) {
			t.Errorf("ValidateTenant(%q) = %v, want ErrInvalidTenant", id, err)
		}
	}
	if err := throttle.ValidateID(throttle.Upstream("api:stripe")); err != nil {
		t.Errorf("ValidateID(Upstream(api:stripe)) = %v", err)
	}
	if err := throttle.ValidateID(throttle.Upstream("")); !errors.Is(err, throttle.ErrInvalidTenant) {
		t.Errorf("ValidateID(Upstream(\"\")) = %v, want ErrInvalidTenant", err)
	}
}

// An upstream's limit lives in keys of its own: spending it leaves the
// tenant of the same name alone and the other way round, and its policy is
// its own, listed by Tenants in its id form.
func TestUpstreamKeysStayApartFromTenants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	l := throttle.New(c, throttle.WithPrefix(prefix), throttle.WithDefaultPolicy(throttle.Policy{Rate: 0.01, Burst: 2}))
	up := throttle.Upstream("acme")
	for i := 0; i < 2; i++ {
		if r, err := l.AllowMulti(ctx, 1, "evil", up); err != nil || !r.Allowed {
			t.Fatalf("evil through %s #%d: %+v, %v", up, i, r, err)
		}
	}
	if r := mustAllowN(t, l, "acme", 2); !r.Allowed {
		t.Fatalf("tenant acme found its bucket used by tasks naming upstream acme: %+v", r)
	}
	if r, _ := l.AllowMulti(ctx, 1, "globex", up); r.Allowed || r.Tenant != up {
		t.Fatalf("upstream acme after 2 of burst 2: %+v, want refused by %s", r, up)
	}
	if err := l.SetPolicy(ctx, up, throttle.Policy{Rate: 1, Burst: 7}); err != nil {
		t.Fatal(err)
	}
	if _, explicit, _ := l.GetPolicy(ctx, "acme"); explicit {
		t.Fatal("the upstream's policy became the tenant's")
	}
	if got, err := l.Tenants(ctx); err != nil || len(got) != 1 || got[0] != up {
		t.Fatalf("Tenants = %q, %v; want [%s]", got, err, up)
	}
	for _, k := range keysWith(t, c, prefix) {
		if strings.Contains(k, "upstream") && !strings.HasPrefix(k, prefix+":{upstream:acme}:") {
			t.Errorf("upstream key %q is not under %s:{upstream:acme}:", k, prefix)
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
