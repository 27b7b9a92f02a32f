package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/quotaq/quotaq/internal/tenantstatus"
	"github.com/quotaq/quotaq/throttle"
)

// maxPerPage bounds the table's page size.
const maxPerPage = 500

// snapshotTimeout bounds the reading of every tenant's standing.
const snapshotTimeout = 5 * time.Minute

// chartSeconds is how many seconds of starts the rate chart shows.
const chartSeconds = 120

// takeSnapshot reads every tenant's standing, as quotaq-enqueue status does.
func (c *Console) takeSnapshot() *snapshot {
	ctx, cancel := context.WithTimeout(c.ctx, snapshotTimeout)
	defer cancel()
	start := time.Now()
	rows, err := tenantstatus.Collect(ctx, c.lim, c.insp, tenantstatus.Options{Queues: c.queues, Asynq: c.rdb})
	return &snapshot{rows: rows, taken: time.Now(), took: time.Since(start), err: err}
}

// tenants answers one page of the table: GET api/tenants?filter=&state=
// &sort=&desc=1&page=&per_page=.
func (c *Console) tenants(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	snap, failed := c.idx.get(r.Context(), c.refresh, c.takeSnapshot)
	if snap == nil || snap.err != nil {
		if snap != nil {
			err = snap.err
		} else {
			err = failed
		}
		c.log.Warn("console: could not list the tenants", "err", err)
		writeError(w, statusOf(err), "could not list the tenants: "+err.Error())
		return
	}
	p := struct {
		page
		Stale string `json:"stale,omitempty"` // why the rows are older than asked
	}{page: snap.run(q)}
	if failed != nil {
		p.Stale = failed.Error()
	}
	writeJSON(w, http.StatusOK, p)
}

// parseQuery reads the table's query, with its defaults: sorted by tenant,
// page 1 of 50.
func parseQuery(r *http.Request) (query, error) {
	v := r.URL.Query()
	q := query{Filter: v.Get("filter"), State: v.Get("state"), Sort: v.Get("sort"), Page: 1, PerPage: 50, Desc: v.Get("desc") == "1"}
	if q.Sort == "" {
		q.Sort = "tenant"
	}
	if _, ok := sortKeys[q.Sort]; !ok {
		return q, fmt.Errorf("sort=%q: give one of tenant, rate, tokens, quota, hold, holds, waiting, next_due, drain, pending, scheduled, active, archived", q.Sort)
	}
	if _, ok := states[q.State]; !ok {
		return q, fmt.Errorf("state=%q: give held, waiting, quota, own, or nothing for every tenant", q.State)
	}
	for name, dst := range map[string]*int{"page": &q.Page, "per_page": &q.PerPage} {
		s := v.Get(name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, fmt.Errorf("%s=%q: give a whole number of at least 1", name, s)
		}
		*dst = n
	}
	if q.PerPage > maxPerPage {
		return q, fmt.Errorf("per_page=%d: give at most %d", q.PerPage, maxPerPage)
	}
	return q, nil
}

// tenantParam reads and checks the id= parameter.
func tenantParam(r *http.Request) (string, error) {
	id := r.URL.Query().Get("id")
	if err := throttle.ValidateID(id); err != nil {
		return "", fmt.Errorf("id=%q: %w", id, err)
	}
	return id, nil
}

// statusOf is the HTTP status of err: 400 for bad input, 503 when Redis
// does not answer, 500 otherwise.
func statusOf(err error) int {
	switch {
	case errors.Is(err, throttle.ErrInvalidTenant), errors.Is(err, throttle.ErrInvalidPolicy):
		return http.StatusBadRequest
	case errors.Is(err, throttle.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// tenant answers one tenant's standing, as quotaq-enqueue standing --json
// prints it: GET api/tenant?id=.
func (c *Console) tenant(w http.ResponseWriter, r *http.Request) {
	id, err := tenantParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sts, err := tenantstatus.Collect(r.Context(), c.lim, c.insp, tenantstatus.Options{Tenants: []string{id}, Queues: c.queues, Asynq: c.rdb})
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, sts[0])
}

// live answers what the tenant page's chart polls, without listing the
// queues: the limiter's standing of the tenant (its task counts zero) and
// how many of its tasks started in each of the last chartSeconds seconds,
// in every worker. GET api/tenant/live?id=.
func (c *Console) live(w http.ResponseWriter, r *http.Request) {
	id, err := tenantParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	st, err := c.lim.Standing(r.Context(), id)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	// the last second whose counts every worker has flushed
	last := time.Now().Add(-2 * time.Second).Unix()
	started, err := c.rates.series(r.Context(), id, last, chartSeconds)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "read the counts of started tasks: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Standing tenantstatus.Status `json:"standing"`
		Last     int64               `json:"last"`    // unix second of the last count
		Started  []int64             `json:"started"` // tasks started each second, the last one at Last
	}{tenantstatus.FromStanding(st, tenantstatus.Tasks{}), last, started})
}
