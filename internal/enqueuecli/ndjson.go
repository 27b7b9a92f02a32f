package enqueuecli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// maxLine is the longest NDJSON line read.
const maxLine = 16 << 20

// line is one NDJSON task. Fields left out take the value of the matching
// flag; durations are Go durations ("30s"), times RFC 3339.
type line struct {
	Tenant    *string           `json:"tenant"`
	Type      *string           `json:"type"`
	Payload   json.RawMessage   `json:"payload"`
	Queue     *string           `json:"queue"`
	In        *string           `json:"in"`
	At        *string           `json:"at"`
	MaxRetry  *int              `json:"max_retry"`
	Timeout   *string           `json:"timeout"`
	Deadline  *string           `json:"deadline"`
	Unique    *string           `json:"unique"`
	Retention *string           `json:"retention"`
	ID        *string           `json:"id"`
	Headers   map[string]string `json:"headers"`
	Shape     *bool             `json:"shape"`
	Cost      json.RawMessage   `json:"cost"`
}

// lineNames names a spec field as an NDJSON key, and the flag that gives its
// default where that helps.
func lineNames(f string) string {
	key := strings.ReplaceAll(f, "-", "_")
	switch f {
	case "tenant", "type":
		return fmt.Sprintf("%q (or --%s)", key, f)
	}
	return fmt.Sprintf("%q", key)
}

// readNDJSON reads and checks every line before returning any task, so a bad
// line anywhere means nothing is enqueued. Blank lines are skipped. Errors are
// usage errors naming the line.
func readNDJSON(r io.Reader, base spec) ([]item, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var tasks []item
	ids := map[string]int{}
	n := 0
	for sc.Scan() {
		n++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		s, err := parseLine(raw, base)
		if err == nil {
			err = s.check(lineNames)
		}
		if err != nil {
			return nil, usagef("line %d: %v", n, err)
		}
		if s.ID != "" {
			if prev, ok := ids[s.ID]; ok {
				return nil, usagef("line %d: id %q is already used on line %d", n, s.ID, prev)
			}
			ids[s.ID] = n
		}
		it := s.item()
		it.line = n
		tasks = append(tasks, it)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, usagef("line %d: longer than %d MiB", n+1, maxLine>>20)
		}
		return nil, fmt.Errorf("read tasks: %w", err)
	}
	return tasks, nil
}

func parseLine(raw []byte, base spec) (spec, error) {
	var l line
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return spec{}, fmt.Errorf("bad JSON at column %d: %v", se.Offset, se)
		case errors.As(err, &te):
			return spec{}, fmt.Errorf("%q must be a %s, not a JSON %s", te.Field, goTypeName(te.Type.String()), te.Value)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return spec{}, fmt.Errorf("bad JSON: the object is cut short")
		default:
			// unknown field: `json: unknown field "x"`
			return spec{}, fmt.Errorf("bad JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	if dec.More() {
		return spec{}, fmt.Errorf("bad JSON: more than one value on the line (one task a line)")
	}
	s := base
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&s.Tenant, l.Tenant)
	set(&s.Type, l.Type)
	set(&s.Queue, l.Queue)
	set(&s.ID, l.ID)
	if len(l.Payload) > 0 {
		if string(l.Payload) == "null" {
			s.Payload = nil
		} else {
			s.Payload = append([]byte(nil), l.Payload...)
		}
	}
	if l.Shape != nil {
		s.Shape = *l.Shape
	}
	if l.MaxRetry != nil {
		s.MaxRetry = *l.MaxRetry
		if s.MaxRetry < 0 {
			return spec{}, fmt.Errorf("\"max_retry\" %d is negative", s.MaxRetry)
		}
	}
	if l.Headers != nil {
		h := make(map[string]string, len(base.Headers)+len(l.Headers))
		for k, v := range base.Headers {
			h[k] = v
		}
		for k, v := range l.Headers {
			h[k] = v
		}
		s.Headers = h
	}
	var err error
	if l.In != nil || l.At != nil {
		// A line's "in" or "at" replaces both flags' --in and --at.
		s.In, s.At = 0, time.Time{}
	}
	if l.At != nil {
		if s.At, err = parseTime(`"at"`, *l.At); err != nil {
			return spec{}, err
		}
	}
	for _, d := range []struct {
		name string
		v    *string
		dst  *time.Duration
	}{
		{"in", l.In, &s.In},
		{"timeout", l.Timeout, &s.Timeout},
		{"unique", l.Unique, &s.Unique},
		{"retention", l.Retention, &s.Retention},
	} {
		if d.v != nil {
			if *d.dst, err = parseDuration(fmt.Sprintf("%q", d.name), *d.v); err != nil {
				return spec{}, err
			}
		}
	}
	if len(l.Cost) > 0 && string(l.Cost) != "null" {
		if s.Cost, err = lineCost(l.Cost); err != nil {
			return spec{}, err
		}
	}
	if l.Deadline != nil {
		if s.Deadline, err = parseTime(`"deadline"`, *l.Deadline); err != nil {
			return spec{}, err
		}
	}
	if l.ID != nil && strings.TrimSpace(*l.ID) == "" {
		return spec{}, fmt.Errorf("\"id\" is blank")
	}
	return s, nil
}

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "*"):
		return goTypeName(t[1:])
	case t == "string":
		return "string"
	case t == "int":
		return "number"
	case strings.HasPrefix(t, "map"):
		return "object"
	}
	return t
}
