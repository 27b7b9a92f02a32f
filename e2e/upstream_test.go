package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// upstream is the fake API the workers' http:call tasks call, on loopback.
// It is the test's witness: a task is processed when its call completed
// with 200, duplicated when that happened more than once.
type upstream struct {
	srv *httptest.Server

	mu       sync.Mutex
	ok       map[int]int                // seq -> completed calls
	attempts map[int]int                // seq -> calls started
	arrivals map[string][]time.Time     // tenant -> start time of each completed call
	hang     map[int]bool               // seqs whose calls never answer (until the caller goes away)
	inFlight map[int]int                // seq -> calls running now
	tenantIn map[string]int             // tenant -> calls running now
	most     map[string]int             // tenant -> most calls running at once
	delay    time.Duration              // each call takes this long
	status   func(seq, attempt int) int // answer; nil: 200
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{ok: map[int]int{}, attempts: map[int]int{}, arrivals: map[string][]time.Time{},
		hang: map[int]bool{}, inFlight: map[int]int{}, tenantIn: map[string]int{}, most: map[string]int{}}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	seq, err := strconv.Atoi(r.URL.Query().Get("seq"))
	if err != nil {
		http.Error(w, "no seq", http.StatusBadRequest)
		return
	}
	tenant := r.URL.Query().Get("tenant")
	u.mu.Lock()
	u.attempts[seq]++
	attempt := u.attempts[seq]
	u.inFlight[seq]++
	u.tenantIn[tenant]++
	u.most[tenant] = max(u.most[tenant], u.tenantIn[tenant])
	hang, delay, status := u.hang[seq], u.delay, u.status
	u.mu.Unlock()
	defer func() { u.mu.Lock(); u.inFlight[seq]--; u.tenantIn[tenant]--; u.mu.Unlock() }()
	if hang {
		<-r.Context().Done()
		return
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return // the worker gave up or died: not processed
		}
	}
	code := http.StatusOK
	if status != nil {
		code = status(seq, attempt)
	}
	if code != http.StatusOK {
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(code)
		return
	}
	u.mu.Lock()
	u.ok[seq]++
	u.arrivals[tenant] = append(u.arrivals[tenant], start)
	u.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// setHang makes seq's calls hang (true) or answer again (false).
func (u *upstream) setHang(seq int, on bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.hang[seq] = on
}

// mostAtOnce reports the most calls of tenant that were in flight at once.
func (u *upstream) mostAtOnce(tenant string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.most[tenant]
}

// running reports how many calls of seq are in flight.
func (u *upstream) running(seq int) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.inFlight[seq]
}

// calls returns how many calls of seq started.
func (u *upstream) calls(seq int) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.attempts[seq]
}

// done returns how many of seqs completed at least once.
func (u *upstream) done(seqs []int) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, s := range seqs {
		if u.ok[s] > 0 {
			n++
		}
	}
	return n
}

// doneFor returns how many tasks of tenant completed (duplicates included).
func (u *upstream) doneFor(tenant string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.arrivals[tenant])
}

// task is one http:call task the test enqueues.
type task struct {
	Seq    int
	Tenant string
	Queue  string
}

// ndjson renders tasks as quotaq-enqueue --file input: http:call tasks
// whose URL names the task's seq and tenant.
func (u *upstream) ndjson(tasks []task) string {
	var b strings.Builder
	for _, tk := range tasks {
		callURL := u.srv.URL + "/call?seq=" + strconv.Itoa(tk.Seq) + "&tenant=" + url.QueryEscape(tk.Tenant)
		line := map[string]any{
			"tenant":  tk.Tenant,
			"type":    "http:call",
			"payload": map[string]any{"tenant": tk.Tenant, "url": callURL},
		}
		if tk.Queue != "" {
			line["queue"] = tk.Queue
		}
		j, _ := json.Marshal(line)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// figures are what a scenario reports.
type figures struct {
	Enqueued, Processed, Lost, Duplicated, Calls int
}

func (f figures) String() string {
	return fmt.Sprintf("enqueued %d, processed %d, lost %d, duplicated %d (upstream calls %d)",
		f.Enqueued, f.Processed, f.Lost, f.Duplicated, f.Calls)
}

// figures counts seqs at the upstream: a seq never completed is lost.
func (u *upstream) figures(seqs []int) figures {
	u.mu.Lock()
	defer u.mu.Unlock()
	f := figures{Enqueued: len(seqs)}
	for _, s := range seqs {
		switch n := u.ok[s]; {
		case n == 0:
			f.Lost++
		default:
			f.Processed++
			f.Duplicated += n - 1
		}
		f.Calls += u.attempts[s]
	}
	return f
}

// seqsOf returns the tasks' seqs.
func seqsOf(tasks []task) []int {
	s := make([]int, len(tasks))
	for i, tk := range tasks {
		s[i] = tk.Seq
	}
	return s
}

// report logs a scenario's figures and appends them to the file named by
// QUOTAQ_E2E_REPORT, if set.
func report(t *testing.T, f figures, extra string) {
	t.Helper()
	line := fmt.Sprintf("%s: %s", t.Name(), f)
	if extra != "" {
		line += "; " + extra
	}
	t.Log(line)
	if path := os.Getenv("QUOTAQ_E2E_REPORT"); path != "" {
		if fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(fh, line)
			fh.Close()
		}
	}
}

// drain waits until every seq completed at the upstream, or fails the
// test with the figures and what asynq still holds.
func drain(t *testing.T, u *upstream, insp *asynq.Inspector, queue string, seqs []int, within time.Duration) {
	t.Helper()
	start := time.Now()
	defer func() {
		t.Logf("drained %d tasks of queue %q after %s", len(seqs), queue, time.Since(start).Round(time.Millisecond))
	}()
	deadline := start.Add(within)
	for u.done(seqs) < len(seqs) {
		if time.Now().After(deadline) {
			t.Fatalf("not every task was processed within %s: %s; queue %q: %s", within, u.figures(seqs), queue, queueState(insp, queue))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// queueState describes what asynq holds in queue.
func queueState(insp *asynq.Inspector, queue string) string {
	q, err := insp.GetQueueInfo(queue)
	if err != nil {
		return err.Error()
	}
	st := fmt.Sprintf("pending %d, active %d, scheduled %d, retry %d, archived %d, completed %d",
		q.Pending, q.Active, q.Scheduled, q.Retry, q.Archived, q.Completed)
	retry, _ := insp.ListRetryTasks(queue, asynq.PageSize(5))
	arch, _ := insp.ListArchivedTasks(queue, asynq.PageSize(5))
	for _, ti := range append(retry, arch...) {
		st += fmt.Sprintf("; %s %s retried %d/%d at %s: %s", ti.State, ti.ID, ti.Retried, ti.MaxRetry, ti.NextProcessAt.Format("15:04:05"), ti.LastErr)
	}
	return st
}

// checkEmpty fails the test if asynq archived a task of queue (a lost
// task), or still holds one waiting to run, once every task was processed.
// It returns how many tasks asynq still holds as active or retrying: tasks
// that ran but whose completion could not be recorded (Redis was away) and
// that asynq's recoverer will run again; at-least-once delivery counts them
// as duplicates to come.
func checkEmpty(t *testing.T, insp *asynq.Inspector, queue string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q, err := insp.GetQueueInfo(queue)
		if err == nil && q.Archived > 0 {
			t.Fatalf("queue %q archived %d tasks: %s", queue, q.Archived, queueState(insp, queue))
		}
		if err == nil && q.Pending+q.Active+q.Scheduled+q.Retry == 0 {
			return 0
		}
		if time.Now().After(deadline) {
			if err != nil || q.Pending+q.Scheduled > 0 {
				t.Fatalf("queue %q still holds tasks after every task was processed: %s", queue, queueState(insp, queue))
			}
			t.Logf("queue %q: %d tasks ran but their completion was not recorded; asynq will run them again: %s", queue, q.Active+q.Retry, queueState(insp, queue))
			return q.Active + q.Retry
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkRate fails the test if tenant's completed calls ever ran faster than
// burst + rate per second over any stretch, allowing slack for the time
// between the limiter's decision and the call's arrival.
func checkRate(t *testing.T, u *upstream, tenant string, rate float64, burst int, slack time.Duration) {
	t.Helper()
	u.mu.Lock()
	at := append([]time.Time(nil), u.arrivals[tenant]...)
	u.mu.Unlock()
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	for i := range at {
		for j := i; j < len(at); j++ {
			most := float64(burst) + rate*(at[j].Sub(at[i])+slack).Seconds()
			if float64(j-i+1) > most {
				t.Errorf("tenant %q: %d calls within %s, the most is %.1f (burst %d + rate %g/s, slack %s)",
					tenant, j-i+1, at[j].Sub(at[i]), most, burst, rate, slack)
				return
			}
		}
	}
}
