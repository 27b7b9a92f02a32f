package redisconn

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// FuzzConfigNeverShowsPassword builds connection settings around any
// password, user, host and tail, in the URL or in the password setting, and
// checks that whatever Validate, Addr, String and the fmt verbs print (the
// error too) never holds the password, raw or URL-escaped, and that a bad
// setting is an ErrInvalidConfig error, never a panic.
func FuzzConfigNeverShowsPassword(f *testing.F) {
	for _, s := range []struct {
		scheme               byte
		user, pw, host, tail string
		inURL                bool
	}{
		{0, "alice", "hunter22", "h", ":6379/0", true},
		{1, "", "p@ss/word#1", "h", ":6380/1", true},
		{0, "u", "hun:ter", "[::1]", ":1/0", true},
		{2, "u", "s3cr3t-pw", "", "/var/run/redis.sock?db=x", true},
		{0, "u", "%41%42pw", "h", ":99999/0", true},
		{0, "u", "pw pw pw", "h", "/zero", true},
		{0, "u", "a?b=c&pw", "h", ":1/0?x=1", true},
		{0, "", "secret-env", "h", ":1/0", false},
		{3, "u", "xyzzy-pw", "h", ":1", true},
	} {
		f.Add(s.scheme, s.user, s.pw, s.host, s.tail, s.inURL)
	}
	schemes := []string{"redis://", "rediss://", "unix://", "", "http://", "REDIS://"}
	f.Fuzz(func(t *testing.T, scheme byte, user, pw, host, tail string, inURL bool) {
		sch := schemes[int(scheme)%len(schemes)]
		others := sch + user + host + tail
		if len(pw) < 4 || strings.Contains(others, pw) || strings.Contains(fmt.Sprintf("%q", others), pw) || strings.ContainsAny(user+host+tail, "@") {
			t.Skip("the password is not identifiable in what is printed")
		}
		c := Config{Env: func(string) (string, bool) { return "", false }}
		if inURL {
			c.URL = sch + user + ":" + pw + "@" + host + tail
		} else {
			c.URL = sch + user + "@" + host + tail
			c.Password = pw
			if strings.Contains(c.URL, strings.TrimSpace(pw)) {
				t.Skip("the URL itself spells the password")
			}
		}
		err := c.Validate()
		shown := []string{c.Addr(), c.String(), fmt.Sprintf("%v %+v %#v %s", c, c, c, &c)}
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate(%s) = %v: not ErrInvalidConfig", c.String(), err)
			}
			shown = append(shown, err.Error(), fmt.Sprintf("%v %+v %#v", err, err, err))
		}
		forms := []string{pw}
		for _, e := range []string{url.QueryEscape(pw), url.PathEscape(pw), url.UserPassword("", pw).String()[1:]} {
			if len(e) >= 4 && !strings.Contains(others, e) {
				forms = append(forms, e)
			}
		}
		for _, s := range shown {
			for _, p := range forms {
				if strings.Contains(s, p) {
					t.Fatalf("URL %q: the password %q shows in %q", RedactURL(c.URL), p, s)
				}
			}
		}
	})
}
