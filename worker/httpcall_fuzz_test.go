package worker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// fakeUpstream answers every request in memory: no network.
type fakeUpstream struct {
	status     int
	retryAfter string
	calls      int
}

func (f *fakeUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	f.calls++
	h := http.Header{}
	if f.retryAfter != "" {
		h.Set("Retry-After", f.retryAfter)
	}
	return &http.Response{StatusCode: f.status, Status: http.StatusText(f.status), Header: h,
		Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

// FuzzHTTPCall runs the http:call handler on any payload against an
// in-memory upstream answering any status and Retry-After: it never
// panics; a payload that is not a valid call is archived (SkipRetry)
// without a request; 2xx succeeds; 429, and 503 with a usable Retry-After,
// give RetryAfter with a delay of at least 0; 408 and 5xx are retried;
// other statuses are archived; and no error shows the password of a URL
// with user info.
func FuzzHTTPCall(f *testing.F) {
	for _, s := range []struct {
		payload    string
		status     int
		retryAfter string
	}{
		{`{"tenant":"acme","url":"http://api.example/x"}`, 200, ""},
		{`{"tenant":"acme","url":"http://api.example/x"}`, 429, "3"},
		{`{"tenant":"acme","url":"http://api.example/x"}`, 429, ""},
		{`{"tenant":"acme","url":"https://api.example/x","method":"POST","body":"b"}`, 503, "Wed, 21 Oct 2015 07:28:00 GMT"},
		{`{"tenant":"acme","url":"https://u:hunter22@api.example/x"}`, 500, ""},
		{`{"tenant":"acme","url":"https://u:hunter22@api.example/x"}`, 404, ""},
		{`{"tenant":"acme","url":"http://api.example/x"}`, 429, "99999999999999999999"},
		{`{"tenant":"acme","url":"http://api.example/x"}`, 429, "-1"},
		{`{"tenant":"","url":"http://api.example/x"}`, 200, ""},
		{`{"tenant":"acme","url":"ftp://api.example/x"}`, 200, ""},
		{`{"tenant":"acme","url":"http://api.example/x","method":"get"}`, 200, ""},
		{`{"tenant":"acme","url":"http://api.example/x","extra":1}`, 200, ""},
		{`{"tenant":"acme","url":"http://api.example/x","header":{"X":"y\r\nZ: 1"}}`, 200, ""},
		{`not json`, 200, ""}, {``, 200, ""}, {`{"tenant":"acme","url":"http://[::1"}`, 200, ""},
	} {
		f.Add([]byte(s.payload), s.status, s.retryAfter)
	}
	f.Fuzz(func(t *testing.T, payload []byte, status int, retryAfter string) {
		if status < 200 || status > 599 {
			status = 200 + (status%400+400)%400
		}
		up := &fakeUpstream{status: status, retryAfter: retryAfter}
		h := NewHTTPCallHandler(&http.Client{Transport: up, Timeout: time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }})
		err := h.ProcessTask(context.Background(), asynq.NewTask(TypeHTTPCall, payload))

		var c HTTPCall
		valid := decodeStrict(payload, &c) == nil && c.Validate() == nil
		if !valid {
			if !errors.Is(err, asynq.SkipRetry) || up.calls != 0 {
				t.Fatalf("payload %q is not a valid call: err %v (want SkipRetry), %d requests (want 0)", payload, err, up.calls)
			}
			return
		}
		if err != nil {
			if u, perr := url.Parse(c.URL); perr == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && len(pw) >= 4 && !strings.Contains(strings.Replace(c.URL, pw, "", 1), pw) &&
					strings.Contains(err.Error(), pw) {
					// (errors once quoted the URL as given, password and all)
					t.Fatalf("the error shows the URL's password %q: %v", pw, err)
				}
			}
		}
		if up.calls == 0 {
			if !errors.Is(err, asynq.SkipRetry) {
				t.Fatalf("valid call %q made no request and was not archived: %v", payload, err)
			}
			return // e.g. a header value net/http refuses
		}
		ra, isRA := asRetryAfter(err)
		_, raOK := ParseRetryAfter(retryAfter, time.Now())
		switch {
		case status >= 200 && status < 300:
			if err != nil {
				t.Fatalf("status %d: %v", status, err)
			}
		case status == http.StatusTooManyRequests || (status == http.StatusServiceUnavailable && raOK):
			if !isRA || ra.Delay < 0 {
				t.Fatalf("status %d, Retry-After %q: %v, want RetryAfter with a delay of 0 or more", status, retryAfter, err)
			}
		case status == http.StatusRequestTimeout || status >= 500:
			if err == nil || errors.Is(err, asynq.SkipRetry) || isRA {
				t.Fatalf("status %d: %v, want an error asynq retries", status, err)
			}
		default:
			if !errors.Is(err, asynq.SkipRetry) {
				t.Fatalf("status %d: %v, want it archived", status, err)
			}
		}
	})
}

// decodeStrict decodes p as the handler does.
func decodeStrict(p []byte, c *HTTPCall) error {
	dec := jsonDecoder(p)
	dec.DisallowUnknownFields()
	return dec.Decode(c)
}

func jsonDecoder(p []byte) *json.Decoder { return json.NewDecoder(strings.NewReader(string(p))) }
