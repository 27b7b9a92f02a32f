package main

import (
	"fmt"
	"strings"

	"github.com/quotaq/quotaq/throttle"
	"github.com/quotaq/quotaq/worker"
)

const metricsTenantsUsage = "comma-separated `tenants` whose quota left the metrics report: TENANT for a series of its own (quotaq_tenant_quota_remaining), TENANT=TIER to add it up in its tier's (quotaq_tier_quota_remaining); each costs a Redis round trip per scrape (default: none, no per-tenant series)"

// parseWatch reads --metrics-tenants: "acme,globex=gold,initech=gold" ->
// tenant -> tier ("" for a tenant alone).
func parseWatch(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		tenant, tier, tiered := strings.Cut(item, "=")
		tenant, tier = strings.TrimSpace(tenant), strings.TrimSpace(tier)
		if tiered && tier == "" {
			return nil, fmt.Errorf("--metrics-tenants: %q has no tier after \"=\": give TENANT or TENANT=TIER", item)
		}
		if err := throttle.ValidateTenant(tenant); err != nil {
			return nil, fmt.Errorf("--metrics-tenants: %q: %v", item, err)
		}
		if _, twice := out[tenant]; twice {
			return nil, fmt.Errorf("--metrics-tenants: tenant %q is listed twice", tenant)
		}
		out[tenant] = tier
	}
	return out, nil
}

// handledTypes are the task types the worker's handlers throttle: their
// metrics series are there from the start.
func (o *options) handledTypes() []string {
	return append([]string{worker.TypeHTTPCall}, o.echoTypeList()...)
}

// echoTypeList is --echo-types as a list.
func (o *options) echoTypeList() []string { return splitList(o.echoTypes) }

// queueNames are the queues of --queues.
func (o *options) queueNames() []string {
	names := make([]string, 0, len(o.queues))
	for n := range o.queues {
		names = append(names, n)
	}
	return names
}
