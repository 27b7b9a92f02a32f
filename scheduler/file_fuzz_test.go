package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/throttle"
)

// FuzzParse feeds any bytes to the schedule file parser: it never panics or
// hangs; an error is a list of *FieldError naming the file; a schedule it
// accepts has unique named entries whose specs fire, whose tenants are
// valid, and whose tasks can be built and read back by the handlers.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"entries:\n  - name: nightly\n    cron: \"0 0 * * *\"\n    action: reset\n    all: true\n",
		"timezone: Europe/Berlin\ncatch_up: 2h\nentries:\n  - name: a.b-c_d\n    cron: \"CRON_TZ=Asia/Tokyo 0 22 * * *\"\n    action: adjust\n    tenant: acme\n    rate: 50\n    burst: 10\n    quota: 1000\n    quota_period: 24h\n",
		"entries:\n  - name: ad\n    cron: \"*/30 * * * * *\"\n    action: adaptive\n    tenants: [acme, \"{x}\"]\n    min_rate: 1\n    max_rate: 200\n    step: 5\n    factor: 0.5\n    catch_up: 0s\n",
		"entries:\n  - name: e\n    cron: \"@every 10m\"\n    action: reset\n    tenants: [\"a\", \"a\"]\n",
		"entries:\n  - name: x\n    cron: \"0 0 30 2 *\"\n    action: reset\n    all: true\n",
		"entries:\n  - {name: x, cron: '* * * * *', action: adjust, all: true, rate: -1}\n",
		"entries:\n  - {name: x, cron: '* * * * *', action: adjust, all: true, burst: 1.5}\n",
		"entries:\n  - {name: x, cron: '* * * * *', action: reset, tenant: \"a\\0b\"}\n",
		"a: &a [*a, *a]\n", "entries: [", "\xff\xfe", "", "timezone: Mars/Olympus\n",
		"entries:\n  - &e {name: x, cron: '* * * * *', action: reset, all: true}\n  - *e\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			t.Skip("schedule files this large are not the point")
		}
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.File != "fuzz.yaml" || !errors.Is(err, ErrBadField) {
				t.Fatalf("Parse error %q (%T) is not a FieldError naming the file", err, err)
			}
			if !strings.Contains(err.Error(), "fuzz.yaml") {
				t.Fatalf("Parse error %q does not name the file", err)
			}
			return
		}
		if s.Location == nil {
			t.Fatal("schedule without a location")
		}
		names := map[string]bool{}
		at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
		for _, e := range s.Entries {
			if e.Name == "" || names[e.Name] {
				t.Fatalf("entry name %q empty or repeated", e.Name)
			}
			names[e.Name] = true
			if e.Schedule == nil || e.CatchUp < 0 {
				t.Fatalf("entry %q: schedule %v, catch-up %s", e.Name, e.Schedule, e.CatchUp)
			}
			if next := e.Schedule.Next(at); !next.IsZero() && !next.After(at) {
				t.Fatalf("entry %q (%s): Next(%s) = %s, not after", e.Name, e.Spec, at, next)
			}
			var tenants []string
			switch e.Action {
			case ActionReset:
				if e.Reset == nil || e.Reset.Validate() != nil {
					t.Fatalf("entry %q: reset %+v does not validate", e.Name, e.Reset)
				}
				tenants = e.Reset.Tenants
			case ActionAdjust:
				if e.Adjust == nil || e.Adjust.Validate() != nil {
					t.Fatalf("entry %q: adjust %+v does not validate", e.Name, e.Adjust)
				}
				tenants = e.Adjust.Tenants
			default:
				t.Fatalf("entry %q: action %q", e.Name, e.Action)
			}
			for _, id := range tenants {
				if err := throttle.ValidateTenant(id); err != nil {
					t.Fatalf("entry %q: tenant %q accepted: %v", e.Name, id, err)
				}
			}
			task, err := e.Task(at)
			if err != nil {
				t.Fatalf("entry %q: Task: %v", e.Name, err)
			}
			switch task.Type() {
			case TypeQuotaReset:
				var r Reset
				if err := json.Unmarshal(task.Payload(), &r); err != nil || r.Validate() != nil {
					t.Fatalf("entry %q: its reset task does not read back: %s (%v)", e.Name, task.Payload(), err)
				}
			case TypeQuotaAdjust:
				var a Adjust
				if err := json.Unmarshal(task.Payload(), &a); err != nil || a.Validate() != nil {
					t.Fatalf("entry %q: its adjust task does not read back: %s (%v)", e.Name, task.Payload(), err)
				}
			default:
				t.Fatalf("entry %q: task type %q", e.Name, task.Type())
			}
		}
	})
}

// FuzzHandlerPayload runs the reset and adjust handlers on any payload,
// against a limiter on miniredis that holds a few tenants' policies: a
// payload they refuse is marked SkipRetry (archived, never retried) and
// changes nothing in Redis; one they accept leaves only valid policies.
func FuzzHandlerPayload(f *testing.F) {
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(m.Close)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	f.Cleanup(func() { _ = rdb.Close() })
	l := throttle.New(rdb, throttle.WithPrefix("fz"))
	h := newHandlers(l, []Option{WithLogger(slog.New(slog.DiscardHandler))})
	tenants := []string{"acme", "globex", "{x}"}

	for _, s := range []struct {
		adjust  bool
		payload string
	}{
		{false, `{"all":true}`}, {false, `{"tenants":["acme","globex"],"next_reset":"2026-12-01T00:00:00Z"}`},
		{false, `{"tenants":["acme",""]}`}, {false, `{}`}, {false, `null`}, {false, `[]`}, {false, `{"tenants":"acme"}`},
		{true, `{"tenants":["acme"],"rate":5}`}, {true, `{"all":true,"burst":0}`}, {true, `{"tenants":["acme","globex"],"rate":1e-9,"burst":1000000}`},
		{true, `{"tenants":["acme","globex"],"quota":-1}`}, {true, `{"tenants":["acme"],"quota_period":1}`},
		{true, `{"tenants":["acme"],"adaptive":{"min_rate":1,"max_rate":10,"step":1,"factor":0.5}}`},
		{true, `{"tenants":["acme"],"adaptive":{"min_rate":10,"max_rate":1,"step":1,"factor":2}}`},
		{true, `{"all":true,"rate":"NaN"}`}, {true, `{"tenants":["globex","acme"],"rate":1e300}`},
	} {
		f.Add(s.adjust, []byte(s.payload))
	}
	f.Fuzz(func(t *testing.T, adjust bool, payload []byte) {
		ctx := context.Background()
		m.FlushAll()
		for i, id := range tenants {
			if err := l.SetPolicy(ctx, id, throttle.Policy{Rate: float64(i + 1), Burst: 10, Quota: 100}); err != nil {
				t.Fatal(err)
			}
			if _, err := l.AllowN(ctx, id, 3); err != nil {
				t.Fatal(err)
			}
		}
		before := m.Dump()
		typ, run := TypeQuotaReset, h.reset
		if adjust {
			typ, run = TypeQuotaAdjust, h.adjust
		}
		err := run(ctx, asynq.NewTask(typ, payload))
		if err != nil {
			if !errors.Is(err, asynq.SkipRetry) || !strings.HasPrefix(err.Error(), "scheduler: ") {
				t.Fatalf("%s payload %q: error %q is not a SkipRetry \"scheduler: \" error", typ, payload, err)
			}
			if after := m.Dump(); after != before {
				t.Fatalf("%s payload %q was refused (%v) but changed Redis:\nbefore %s\nafter %s", typ, payload, err, before, after)
			}
			return
		}
		for _, id := range tenants {
			p, _, err := l.GetPolicy(ctx, id)
			if err != nil {
				t.Fatalf("after %s %q: policy of %q unreadable: %v", typ, payload, id, err)
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("after %s %q: policy of %q is invalid: %v", typ, payload, id, err)
			}
		}
	})
}
