package worker

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
)

// FuzzTenantOf feeds any tenant header and payload to the middleware's
// tenant lookup: it never panics; a tenant it returns is valid; a bad one is
// an error matching throttle.ErrInvalidTenant that starts with "worker:" and
// stays short whatever the payload's size; and a tenant read from the
// payload is exactly the string under its "tenant" key.
func FuzzTenantOf(f *testing.F) {
	for _, s := range []struct {
		header  string
		has     bool
		payload string
	}{
		{"acme", true, ""}, {"", true, `{"tenant":"acme"}`}, {"a\x00b", true, ""},
		{"", false, `{"tenant":"acme"}`}, {"", false, ` {"tenant": 42}`}, {"", false, `{"tenant":null}`},
		{"", false, `{"tenant":""}`}, {"", false, `["tenant"]`}, {"", false, `{"tenant":"\u0000"}`},
		{"", false, `{"tenant":"` + strings.Repeat("x", 200) + `"}`}, {"", false, `{"Tenant":"victim"}`},
		{"", false, `{"tenant":"a","TENANT":"victim"}`}, {"", false, `{"tenant":"a"} trailing`},
		{"", false, "\xff{"}, {"{}:", true, `{"tenant":"b"}`},
	} {
		f.Add(s.header, s.has, []byte(s.payload))
	}
	th := &Throttler{}
	f.Fuzz(func(t *testing.T, header string, hasHeader bool, payload []byte) {
		var task *asynq.Task
		if hasHeader {
			task = asynq.NewTaskWithHeaders("fuzz:task", payload, map[string]string{TenantHeader: header})
		} else {
			task = asynq.NewTask("fuzz:task", payload)
		}
		id, src, err := th.tenantOf(task)
		if err != nil {
			if !errors.Is(err, throttle.ErrInvalidTenant) || !strings.HasPrefix(err.Error(), "worker: ") {
				t.Fatalf("error %q: want a \"worker: \" error matching ErrInvalidTenant", err)
			}
			if len(err.Error()) > 600 {
				t.Fatalf("error is %d bytes long: it echoes the input", len(err.Error()))
			}
			return
		}
		switch src {
		case fromUntenanted:
			if id != "" {
				t.Fatalf("untenanted with id %q", id)
			}
			return
		case fromHeader:
			if !hasHeader || id != header {
				t.Fatalf("tenant %q from the header, which is %q (%v)", id, header, hasHeader)
			}
		}
		if verr := throttle.ValidateTenant(id); verr != nil {
			t.Fatalf("tenantOf returned an invalid tenant %q: %v", id, verr)
		}
		if src != fromPayload {
			return
		}
		// the payload's exact "tenant" key must name it: not "Tenant", not
		// a later "TENANT" (encoding/json matches keys case-insensitively)
		var m map[string]json.RawMessage
		var exact string
		if json.Unmarshal(payload, &m) != nil || json.Unmarshal(m["tenant"], &exact) != nil || exact != id {
			// (payloadTenant once decoded into a struct, which matched
			// "Tenant" and "TENANT" too)
			t.Fatalf("payload %q read as tenant %q, but its exact \"tenant\" key says %q", payload, id, exact)
		}
	})
}
