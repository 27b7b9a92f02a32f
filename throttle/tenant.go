package throttle

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxTenantLen is the longest tenant id, in bytes.
const MaxTenantLen = 128

// ValidateTenant reports whether id can name a tenant: non-empty, at most
// MaxTenantLen bytes of valid UTF-8, and no control characters. Any other
// character is allowed, braces and colons too: keys escape them.
func ValidateTenant(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty (give the tenant a name)", ErrInvalidTenant)
	case len(id) > MaxTenantLen:
		return fmt.Errorf("%w: %d bytes, the most is %d", ErrInvalidTenant, len(id), MaxTenantLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidTenant, id)
	}
	for i, r := range id {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: %q has a control character at byte %d", ErrInvalidTenant, id, i)
		}
	}
	return nil
}

// escapeTenant makes id safe inside a hash tag and a key: '{', '}', ':' and
// '%' become %7B, %7D, %3A and %25, so the tag is exactly the tenant and no
// two ids share a key.
func escapeTenant(id string) string {
	if !strings.ContainsAny(id, "{}:%") {
		return id
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		switch c := id[i]; c {
		case '{', '}', ':', '%':
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeTenant reverses escapeTenant.
func unescapeTenant(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	r := strings.NewReplacer("%7B", "{", "%7D", "}", "%3A", ":", "%25", "%")
	return r.Replace(s)
}

// keys names one tenant's keys.
type keys struct{ policy, state, quota, aux, holds, tb string }

func (l *Limiter) keysFor(id string) keys {
	base := l.prefix + ":{" + escapeTenant(id) + "}:"
	k := keys{
		policy: base + "policy",
		state:  base + l.algo.short,
		quota:  base + "quota",
		aux:    base + "aux",
		holds:  base + "holds",
	}
	// the token bucket's state, whatever l.algo: lean.lua caches in it
	k.tb = k.state
	if l.algo.short != "tb" {
		k.tb = base + "tb"
	}
	return k
}
