package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/quotaq/quotaq/throttle"
)

// TypeHTTPCall is the task type of a generic outbound HTTP call: the thing
// users usually throttle. Its payload is an HTTPCall in JSON.
const TypeHTTPCall = "http:call"

// HTTPCall is the payload of a TypeHTTPCall task.
type HTTPCall struct {
	Tenant   string            `json:"tenant"`             // whose quota the call spends
	Upstream string            `json:"upstream,omitempty"` // optional shared limit, e.g. "api.example.com"
	Method   string            `json:"method,omitempty"`   // default GET
	URL      string            `json:"url"`                // absolute http:// or https:// URL
	Header   map[string]string `json:"header,omitempty"`
	Body     string            `json:"body,omitempty"`
}

// Validate reports whether c can be sent, naming the bad field.
func (c HTTPCall) Validate() error {
	if err := throttle.ValidateTenant(c.Tenant); err != nil {
		return fmt.Errorf("worker: http call tenant: %w", err)
	}
	if c.Upstream != "" {
		if err := throttle.ValidateUpstream(c.Upstream); err != nil {
			return fmt.Errorf("worker: http call upstream: %w", err)
		}
	}
	if strings.ToUpper(c.Method) != c.Method || strings.ContainsAny(c.Method, " \t\r\n/") {
		return fmt.Errorf("worker: http call method %q: use an upper-case HTTP method such as GET or POST", c.Method)
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("worker: http call url %q: give an absolute http:// or https:// URL", redactURL(c.URL))
	}
	return nil
}

// NewHTTPCallTask returns a TypeHTTPCall task for c, with c's tenant (and
// upstream) also in the task's headers, where the Throttler looks first.
func NewHTTPCallTask(c HTTPCall, opts ...asynq.Option) (*asynq.Task, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("worker: encode http call: %w", err)
	}
	h := StampReady(map[string]string{TenantHeader: c.Tenant}, opts...)
	if c.Upstream != "" {
		h[UpstreamHeader] = c.Upstream
	}
	return asynq.NewTaskWithHeaders(TypeHTTPCall, p, h, opts...), nil
}

// DefaultRetryAfter is the delay used for a 429 answer without a usable
// Retry-After header.
const DefaultRetryAfter = time.Second

// NewHTTPCallHandler returns the handler of TypeHTTPCall tasks. It sends the
// request with client (nil: a client with a 30 s timeout) and maps the
// answer:
//
//   - 2xx: done; when the answer says the upstream's budget is spent
//     (ParseBudget: RateLimit, X-RateLimit-Remaining 0), the tenant is held
//     until it is back (UpstreamSpent), before it draws a 429;
//   - 429, or 503 with Retry-After: RetryAfter(the header's delay, or the
//     budget's reset, or DefaultRetryAfter for a 429 without either), so
//     the task goes back, its tenant is held and slowed down (see
//     throttle.Limiter.Backoff);
//   - 408, other 5xx, network errors: an error, retried by asynq;
//   - other 4xx, a bad payload, a host the AllowList refuses: archived at
//     once (asynq.SkipRetry), since sending it again cannot help.
//
// Every request, redirect and dialled address is checked against the
// WithAllowList option (by default: any host but link-local, cloud metadata
// and unspecified addresses); a redirect to another host carries none of the
// task's headers but a few harmless ones (Accept, Content-Type, ...), so no
// Authorization, Cookie or API key leaves the host it was meant for.
func NewHTTPCallHandler(client *http.Client, opts ...HTTPCallOption) asynq.Handler {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	var cfg httpCallConfig
	for _, o := range opts {
		o(&cfg)
	}
	client = guardClient(client, cfg.allow)
	return asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		var c HTTPCall
		dec := json.NewDecoder(strings.NewReader(string(task.Payload())))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return fmt.Errorf("worker: %s payload is not a valid HTTPCall JSON object: %v: %w", TypeHTTPCall, err, asynq.SkipRetry)
		}
		if err := c.Validate(); err != nil {
			return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
		}
		method := c.Method
		if method == "" {
			method = http.MethodGet
		}
		var body io.Reader
		if c.Body != "" {
			body = strings.NewReader(c.Body)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.URL, body)
		if err != nil {
			return fmt.Errorf("worker: http call %s %s: %s: %w", method, redactURL(c.URL),
				strings.ReplaceAll(err.Error(), c.URL, redactURL(c.URL)), asynq.SkipRetry)
		}
		if err := cfg.allow.checkURL(req.URL); err != nil {
			return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
		}
		for k, v := range c.Header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if de := (*DeniedHostError)(nil); errors.As(err, &de) {
			return fmt.Errorf("worker: http call %s %s: %w: %w", method, redactURL(c.URL), de, asynq.SkipRetry)
		}
		if err != nil {
			return fmt.Errorf("worker: http call %s %s: %w", method, redactURL(c.URL), err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		status := fmt.Errorf("worker: http call %s %s: %s", method, redactURL(c.URL), resp.Status)
		switch code := resp.StatusCode; {
		case code >= 200 && code < 300:
			// the upstream says its budget is spent: the tenant waits for
			// it, instead of drawing a 429 with its next call
			if left, d, ok := ParseBudget(resp.Header, time.Now()); ok && left == 0 {
				UpstreamSpent(ctx, d)
			}
			return nil
		case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
			d, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
			if !ok {
				_, d, ok = ParseBudget(resp.Header, time.Now())
			}
			switch {
			case ok:
				return RetryAfter(d, status)
			case code == http.StatusTooManyRequests:
				return RetryAfter(DefaultRetryAfter, status)
			}
			return status
		case code == http.StatusRequestTimeout || code >= 500:
			return status
		default:
			return fmt.Errorf("%w: %w", status, asynq.SkipRetry)
		}
	})
}

// redactURL is raw without the password of its user info, for errors and
// logs; a URL that does not parse loses everything before its last '@'.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if i := strings.LastIndex(raw, "@"); i >= 0 {
		return "…@" + raw[i+1:]
	}
	return raw
}
