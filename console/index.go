package console

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/quotaq/quotaq/internal/tenantstatus"
)

// snapshot is every tenant's standing at one time, as quotaq-enqueue status
// --json reports it, with its orders by each sort key, computed once.
type snapshot struct {
	rows  []tenantstatus.Status // by tenant id
	taken time.Time
	took  time.Duration
	err   error

	mu     sync.Mutex
	orders map[string][]int // sort key -> row indexes in ascending order
	lower  []string         // the tenant ids in lower case, for the filter
}

// index holds the latest snapshot and takes the next one in the background.
type index struct {
	mu      sync.Mutex
	cur     *snapshot
	running bool
	failed  error         // the last attempt's error, when cur is older
	first   chan struct{} // closed when the first snapshot is in
}

// sortKeys are the table's sortable columns: each compares two rows.
var sortKeys = map[string]func(a, b *tenantstatus.Status) int{
	"tenant":    func(a, b *tenantstatus.Status) int { return strings.Compare(a.Tenant, b.Tenant) },
	"rate":      func(a, b *tenantstatus.Status) int { return cmp.Compare(a.Policy.Rate, b.Policy.Rate) },
	"tokens":    func(a, b *tenantstatus.Status) int { return cmp.Compare(a.Tokens, b.Tokens) },
	"quota":     func(a, b *tenantstatus.Status) int { return cmp.Compare(quotaUsedShare(a), quotaUsedShare(b)) },
	"hold":      func(a, b *tenantstatus.Status) int { return cmp.Compare(a.HoldLeft, b.HoldLeft) },
	"holds":     func(a, b *tenantstatus.Status) int { return cmp.Compare(a.Holds, b.Holds) },
	"waiting":   func(a, b *tenantstatus.Status) int { return cmp.Compare(waitingTotal(a), waitingTotal(b)) },
	"next_due":  func(a, b *tenantstatus.Status) int { return cmp.Compare(a.Waiting.NextDueIn, b.Waiting.NextDueIn) },
	"drain":     func(a, b *tenantstatus.Status) int { return cmp.Compare(a.Waiting.DrainIn, b.Waiting.DrainIn) },
	"pending":   func(a, b *tenantstatus.Status) int { return cmp.Compare(a.Tasks.Pending, b.Tasks.Pending) },
	"scheduled": func(a, b *tenantstatus.Status) int { return cmp.Compare(a.Tasks.Scheduled, b.Tasks.Scheduled) },
	"active":    func(a, b *tenantstatus.Status) int { return cmp.Compare(a.Tasks.Active, b.Tasks.Active) },
	"archived":  func(a, b *tenantstatus.Status) int { return cmp.Compare(a.Tasks.Archived, b.Tasks.Archived) },
}

// states are the table's filters by state.
var states = map[string]func(s *tenantstatus.Status) bool{
	"":        func(*tenantstatus.Status) bool { return true },
	"held":    func(s *tenantstatus.Status) bool { return s.HoldLeft > 0 },
	"waiting": func(s *tenantstatus.Status) bool { return waitingTotal(s) > 0 },
	"quota":   func(s *tenantstatus.Status) bool { return s.Quota != nil && s.Quota.Remaining == 0 },
	"own":     func(s *tenantstatus.Status) bool { return s.Explicit },
}

func waitingTotal(s *tenantstatus.Status) int {
	return s.Waiting.ForTurn + s.Waiting.ForOther + s.Waiting.ForSlot
}

// quotaUsedShare is the part of its quota a tenant used, -1 without one.
func quotaUsedShare(s *tenantstatus.Status) float64 {
	if s.Quota == nil || s.Quota.Limit == 0 {
		return -1
	}
	return float64(s.Quota.Used) / float64(s.Quota.Limit)
}

// order returns the row indexes sorted by key, ties by tenant id.
func (s *snapshot) order(key string) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.orders[key]; ok {
		return o
	}
	less := sortKeys[key]
	o := make([]int, len(s.rows))
	for i := range o {
		o[i] = i
	}
	slices.SortStableFunc(o, func(i, j int) int { return less(&s.rows[i], &s.rows[j]) })
	if s.orders == nil {
		s.orders = map[string][]int{}
	}
	s.orders[key] = o
	return o
}

// lowerIDs returns the tenant ids in lower case.
func (s *snapshot) lowerIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lower == nil {
		s.lower = make([]string, len(s.rows))
		for i := range s.rows {
			s.lower[i] = strings.ToLower(s.rows[i].Tenant)
		}
	}
	return s.lower
}

// query is one request of the table.
type query struct {
	Filter  string // a part of the tenant id, case-insensitive
	State   string // a key of states
	Sort    string // a key of sortKeys
	Desc    bool
	Page    int // from 1
	PerPage int
}

// page is one page of the table.
type page struct {
	Total    int                   `json:"total"`    // tenants in the snapshot
	Matching int                   `json:"matching"` // of them, those the filter lets through
	Page     int                   `json:"page"`
	Pages    int                   `json:"pages"`
	PerPage  int                   `json:"per_page"`
	Sort     string                `json:"sort"`
	Desc     bool                  `json:"desc"`
	AsOf     time.Time             `json:"as_of"`            // when the snapshot was taken
	TookMs   float64               `json:"snapshot_took_ms"` // how long taking it took
	Rows     []tenantstatus.Status `json:"rows"`
}

// run answers q from the snapshot.
func (s *snapshot) run(q query) page {
	o, ids := s.order(q.Sort), s.lowerIDs()
	keep := states[q.State]
	filter := strings.ToLower(q.Filter)
	p := page{Total: len(s.rows), Page: q.Page, PerPage: q.PerPage, Sort: q.Sort, Desc: q.Desc, AsOf: s.taken,
		TookMs: float64(s.took.Microseconds()) / 1000, Rows: []tenantstatus.Status{}}
	from := (q.Page - 1) * q.PerPage
	for k := range o {
		i := o[k]
		if q.Desc {
			i = o[len(o)-1-k]
		}
		r := &s.rows[i]
		if !keep(r) || filter != "" && !strings.Contains(ids[i], filter) {
			continue
		}
		if p.Matching >= from && len(p.Rows) < q.PerPage {
			p.Rows = append(p.Rows, *r)
		}
		p.Matching++
	}
	p.Pages = max(1, (p.Matching+q.PerPage-1)/q.PerPage)
	return p
}

// get returns a snapshot no older than maxAge when it has one; else it
// starts taking a new one (one at a time) and returns the one it has,
// waiting for the first. failed is the error of the last attempt when it
// failed after an earlier one had succeeded: the rows are older than asked.
func (x *index) get(ctx context.Context, maxAge time.Duration, take func() *snapshot) (s *snapshot, failed error) {
	x.mu.Lock()
	if x.first == nil {
		x.first = make(chan struct{})
	}
	cur, first := x.cur, x.first
	// never busier than a quarter of the time: a slow snapshot is taken
	// less often
	stale := cur == nil || time.Since(cur.taken) > max(maxAge, 4*cur.took)
	if stale && !x.running {
		x.running = true
		go func() {
			s := take()
			x.mu.Lock()
			defer x.mu.Unlock()
			x.running = false
			if s.err != nil && x.cur != nil && x.cur.err == nil {
				x.failed = s.err // keep the rows, say they are old
				return
			}
			if x.cur == nil {
				close(x.first)
			}
			x.cur, x.failed = s, nil
		}()
	}
	failed = x.failed
	x.mu.Unlock()
	if cur != nil {
		return cur, failed
	}
	select {
	case <-first:
	case <-ctx.Done():
		return nil, fmt.Errorf("the first list of tenants is still being read: %w", ctx.Err())
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.cur, x.failed
}
