package worker

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
)

// TenantHeader is the task header that names a task's tenant
// (asynq.NewTaskWithHeaders). It is read first.
const TenantHeader = "tenant"

// UpstreamHeader is the task header that names a shared limit the task is
// also checked against, such as the upstream API it calls (see
// WithUpstream).
const UpstreamHeader = "upstream"

// tenantSource says where a task's tenant came from, for logs.
type tenantSource string

const (
	fromHeader     tenantSource = "header"
	fromPayload    tenantSource = "payload"
	fromFunc       tenantSource = "func"
	fromUntenanted tenantSource = "untenanted"
)

// tenantOf finds task's tenant: the TenantHeader header, else the "tenant"
// field of a JSON object payload, else the tenant func. found is false when
// none of them names one. A tenant that is named but invalid is an error
// (wrapping throttle.ErrInvalidTenant) that says where it came from.
func (t *Throttler) tenantOf(task *asynq.Task) (id string, src tenantSource, err error) {
	if id, ok := task.Headers()[TenantHeader]; ok {
		if err := throttle.ValidateTenant(id); err != nil {
			return "", fromHeader, fmt.Errorf("worker: %q header of task type %q: %w", TenantHeader, task.Type(), err)
		}
		return id, fromHeader, nil
	}
	if id, ok, err := payloadTenant(task.Payload()); err != nil {
		return "", fromPayload, fmt.Errorf("worker: payload of task type %q: %w", task.Type(), err)
	} else if ok {
		return id, fromPayload, nil
	}
	if t.tenantFunc != nil {
		if id, ok := t.tenantFunc(task); ok {
			if err := throttle.ValidateTenant(id); err != nil {
				return "", fromFunc, fmt.Errorf("worker: tenant func on task type %q: %w", task.Type(), err)
			}
			return id, fromFunc, nil
		}
	}
	return "", fromUntenanted, nil
}

// TaskTenant returns the tenant a Throttler without a tenant func finds on
// task: its TenantHeader header, else the "tenant" field of a JSON object
// payload. ok is false when neither names a valid tenant.
func TaskTenant(task *asynq.Task) (id string, ok bool) {
	if id, found := task.Headers()[TenantHeader]; found {
		return id, throttle.ValidateTenant(id) == nil
	}
	id, ok, err := payloadTenant(task.Payload())
	return id, ok && err == nil
}

// payloadTenant reads the "tenant" field of a JSON object payload. A payload
// that is not a JSON object, or has no such field, has no tenant (ok false,
// no error); a "tenant" field that is not a valid tenant id is an error.
func payloadTenant(p []byte) (id string, ok bool, err error) {
	p = bytes.TrimLeft(p, " \t\r\n")
	if len(p) == 0 || p[0] != '{' {
		return "", false, nil
	}
	// a map, not a struct: the key must be exactly "tenant" (a struct field
	// would also match "Tenant" or a later "TENANT" and charge that tenant)
	var v map[string]json.RawMessage
	if json.Unmarshal(p, &v) != nil {
		return "", false, nil
	}
	raw, found := v["tenant"]
	if !found || string(raw) == "null" {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &id); err != nil {
		return "", false, fmt.Errorf("%w: the \"tenant\" field is %s, not a string", throttle.ErrInvalidTenant, truncate(string(raw), 40))
	}
	if err := throttle.ValidateTenant(id); err != nil {
		return "", false, fmt.Errorf("the \"tenant\" field: %w", err)
	}
	return id, true, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
