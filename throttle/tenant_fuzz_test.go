package throttle

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"
)

// FuzzTenantKeys checks the key escaping on any pair of ids, tenants and
// upstream ids alike: a valid id's keys carry exactly one hash tag, which
// decodes back to the id, and two different ids never share a key, whatever
// braces, colons or percent signs they hold; no valid tenant id is an
// upstream id. An invalid id is refused with ErrInvalidTenant, never a panic.
func FuzzTenantKeys(f *testing.F) {
	for _, s := range [][2]string{
		{"acme", "globex"}, {"a", "{a}"}, {"a}", "a%7D"}, {"%", "%25"}, {"a:b", "a%3Ab"},
		{"}{", "{}"}, {"x}:policy", "x"}, {"", "a"}, {"a\x00b", "ab"}, {"\xff", "ÿ"},
		{strings.Repeat("é", 64), strings.Repeat("é", 65)}, {"%7", "%7%"},
		{"upstream:acme", "acme"}, {"upstream:acme", "upstream%3Aacme"}, {"upstream:a:b", "upstream:a%3Ab"},
		{"upstream:", "upstream"}, {"upstream:upstream:x", "upstream:x"},
	} {
		f.Add(s[0], s[1], "quotaq")
	}
	f.Fuzz(func(t *testing.T, a, b, prefix string) {
		l := New(nil, WithPrefix(prefix))
		ea, eb := ValidateID(a), ValidateID(b)
		for _, c := range []struct {
			id  string
			err error
		}{{a, ea}, {b, eb}} {
			if c.err != nil {
				if !errors.Is(c.err, ErrInvalidTenant) {
					t.Fatalf("ValidateID(%q) = %v, not ErrInvalidTenant", c.id, c.err)
				}
				continue
			}
			esc := hashTag(c.id)
			if got := unescapeTenant(esc); got != c.id {
				t.Fatalf("unescape(hashTag(%q)) = %q", c.id, got)
			}
			name, up := UpstreamName(c.id)
			if up == (ValidateTenant(c.id) == nil) {
				t.Fatalf("id %q: upstream %v, but ValidateTenant = %v", c.id, up, ValidateTenant(c.id))
			}
			if bare := strings.TrimPrefix(esc, upstreamPrefix); strings.ContainsAny(bare, "{}:") || (up && bare != escapeTenant(name)) {
				t.Fatalf("hash tag of %q = %q holds a brace or colon of its own", c.id, esc)
			}
			k := l.keysFor(c.id)
			for _, key := range []string{k.policy, k.state, k.quota, k.aux, k.holds} {
				open := strings.IndexByte(key, '{')
				end := strings.IndexByte(key[open+1:], '}')
				if open < 0 || end < 0 || key[open+1:open+1+end] != esc {
					t.Fatalf("key %q of id %q: hash tag is not the escaped id %q", key, c.id, esc)
				}
			}
		}
		if ea != nil || eb != nil || a == b {
			return
		}
		ka, kb := l.keysFor(a), l.keysFor(b)
		seen := map[string]bool{}
		for _, key := range []string{ka.policy, ka.state, ka.quota, ka.aux, ka.holds} {
			seen[key] = true
		}
		for _, key := range []string{kb.policy, kb.state, kb.quota, kb.aux, kb.holds} {
			if seen[key] {
				t.Fatalf("ids %q and %q share the key %q", a, b, key)
			}
		}
	})
}

// FuzzPolicy checks Validate on any numbers: it never panics, it refuses
// with ErrInvalidPolicy, and a policy it accepts can be enforced with exact
// integers (the time to fill the bucket is at most maxFill, computed without
// overflow) and survives the trip through Redis's policy hash.
func FuzzPolicy(f *testing.F) {
	f.Add(10.0, int64(10), int64(0), int64(0))
	f.Add(1.0/3600, int64(100), int64(10000), int64(24*time.Hour))
	f.Add(1e9, int64(1), int64(1), int64(time.Millisecond))
	f.Add(math.NaN(), int64(1), int64(0), int64(0))
	f.Add(math.Inf(1), int64(1), int64(0), int64(0))
	f.Add(-1.0, int64(1), int64(0), int64(0))
	f.Add(2.5e8, int64(1<<62+1), int64(0), int64(0)) // interval 4ns x burst wraps around int64
	f.Add(1.0, int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64))
	f.Add(5e-324, int64(1), int64(0), int64(0))
	f.Add(1e-10, int64(1), int64(0), int64(0)) // 1e9/rate wraps int64: was stored as 1ns a token
	f.Fuzz(func(t *testing.T, rate float64, burst, quota, period int64) {
		p := Policy{Rate: rate, Burst: burst, Quota: quota, QuotaPeriod: time.Duration(period)}
		_ = p.String()
		err := p.Validate()
		if err != nil {
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("Validate(%+v) = %v, not ErrInvalidPolicy", p, err)
			}
			return
		}
		if iv, want := float64(p.interval()), 1e9/p.Rate; math.Abs(iv-want) > 0.5 {
			t.Fatalf("Validate accepted %+v: its interval is %vns, not the %vns a token takes", p, iv, want)
		}
		fill := new(big.Int).Mul(big.NewInt(p.interval()), big.NewInt(p.Burst))
		if fill.Cmp(big.NewInt(int64(maxFill))) > 0 {
			t.Fatalf("Validate accepted %+v: interval %dns x burst %d = %sns to fill, above the most %d (int64 overflow?)",
				p, p.interval(), p.Burst, fill, int64(maxFill))
		}
		m := map[string]string{}
		fs := p.fields()
		for i := 0; i < len(fs); i += 2 {
			m[fs[i].(string)] = toString(fs[i+1])
		}
		back, err := policyFromFields(m)
		if err != nil {
			t.Fatalf("policyFromFields(fields(%+v)) = %v", p, err)
		}
		if back.Rate != p.Rate || back.Burst != p.Burst || back.Quota != p.Quota {
			t.Fatalf("policy %+v came back from its hash as %+v", p, back)
		}
		if back.QuotaPeriod != p.QuotaPeriod.Truncate(time.Microsecond) {
			t.Fatalf("quota period %s came back as %s", p.QuotaPeriod, back.QuotaPeriod)
		}
	})
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return big.NewInt(x).String()
	}
	panic("unexpected field type")
}
