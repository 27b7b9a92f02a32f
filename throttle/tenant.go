package throttle

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxTenantLen is the longest tenant id, in bytes.
const MaxTenantLen = 128

// upstreamPrefix starts every upstream id (Upstream).
const upstreamPrefix = "upstream:"

// Upstream returns the id of a shared limit named name, such as an upstream
// API that all tenants call: pass it in Request.IDs after the tenant (or to
// SetPolicy, Standing, Hold, ResetQuota... as any id). Upstream ids have a
// key space of their own, which no tenant id can name: ValidateTenant
// refuses ids that start with "upstream:", so a tenant cannot spend an
// upstream's tokens by calling itself "upstream:acme". The id is
// "upstream:" + name; name follows a tenant id's rules (ValidateUpstream).
func Upstream(name string) string { return upstreamPrefix + name }

// UpstreamName reports whether id is an upstream id (see Upstream), and
// returns its name.
func UpstreamName(id string) (name string, ok bool) {
	return strings.CutPrefix(id, upstreamPrefix)
}

// ValidateTenant reports whether id can name a tenant: non-empty, at most
// MaxTenantLen bytes of valid UTF-8, no control characters, and not an
// upstream id (one that starts with "upstream:", see Upstream). Any other
// character is allowed, braces and colons too: keys escape them.
func ValidateTenant(id string) error {
	if name, ok := UpstreamName(id); ok {
		return fmt.Errorf("%w: %q starts with %q, which names a shared upstream limit (%q), not a tenant; pick another tenant id",
			ErrInvalidTenant, id, upstreamPrefix, name)
	}
	return validateName("tenant", id)
}

// ValidateUpstream reports whether name can name an upstream (see
// Upstream): the rules of a tenant id, except that it may start with
// "upstream:".
func ValidateUpstream(name string) error { return validateName("upstream", name) }

// ValidateID reports whether id is a valid tenant id or a valid upstream id
// (Upstream(name)): what every per-id call of a Limiter accepts.
func ValidateID(id string) error {
	if name, ok := UpstreamName(id); ok {
		return ValidateUpstream(name)
	}
	return ValidateTenant(id)
}

// validateName checks a tenant id or an upstream name; kind names which in
// the error.
func validateName(kind, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty (give the %s a name)", ErrInvalidTenant, kind)
	case len(id) > MaxTenantLen:
		return fmt.Errorf("%w: %s of %d bytes, the most is %d", ErrInvalidTenant, kind, len(id), MaxTenantLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalidTenant, kind, id)
	}
	for i, r := range id {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: %s %q has a control character at byte %d", ErrInvalidTenant, kind, id, i)
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

// hashTag is id's Redis Cluster hash tag, without the braces: the escaped
// tenant id, or for an upstream id "upstream:" and the escaped name. A
// tenant's tag never holds a bare ':' (escapeTenant), so no tenant id can
// name an upstream's keys. unescapeTenant(hashTag(id)) == id.
func hashTag(id string) string {
	if name, ok := UpstreamName(id); ok {
		return upstreamPrefix + escapeTenant(name)
	}
	return escapeTenant(id)
}

// unescapeTenant reverses escapeTenant (and hashTag).
func unescapeTenant(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	r := strings.NewReplacer("%7B", "{", "%7D", "}", "%3A", ":", "%25", "%")
	return r.Replace(s)
}

// keys names one tenant's keys.
type keys struct{ policy, state, quota, aux, slots, holds, tb string }

// base is the start of every key of id: "<prefix>:{<hashTag(id)>}:".
func (l *Limiter) base(id string) string { return l.prefix + ":{" + hashTag(id) + "}:" }

func (l *Limiter) keysFor(id string) keys {
	base := l.base(id)
	k := keys{
		policy: base + "policy",
		state:  base + l.algo.short,
		quota:  base + "quota",
		aux:    base + "aux",
		slots:  base + "slots",
		holds:  base + "holds",
	}
	// the token bucket's state, whatever l.algo: it caches the policy and
	// whether there is an aux hash (see lua/tokenbucket.lua)
	k.tb = base + algorithms[TokenBucket].short
	return k
}
