package throttle_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/throttle"
)

// On a server with Redis functions the decisions run as one (FCALL), loaded
// on first use and again when the server has lost it; a user not allowed to
// use functions gets the same decisions from the script (EVALSHA).
func TestDecisionsRunAsAFunctionOrAScript(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		acl  []any // the user's rules; nil: the default user
		want string
	}{
		{"Function", nil, "fcall"},
		{"NotAllowedToLoad", []any{"+@all", "-function"}, "evalsha"},
		{"NotAllowedToCall", []any{"+@all", "-fcall"}, "evalsha"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := redistest.NewServer(t)
			admin := redis.NewClient(&redis.Options{Addr: s.Addr})
			t.Cleanup(func() { _ = admin.Close() })
			opts := &redis.Options{Addr: s.Addr}
			if tc.acl != nil {
				rules := append([]any{"ACL", "SETUSER", "u", "on", ">pw", "~*", "&*"}, tc.acl...)
				if err := admin.Do(ctx, rules...).Err(); err != nil {
					t.Fatal(err)
				}
				opts.Username, opts.Password = "u", "pw"
			}
			c := redis.NewClient(opts)
			t.Cleanup(func() { _ = c.Close() })
			runs := &redistest.Runs{}
			c.AddHook(runs)
			l := throttle.New(c, throttle.WithDefaultPolicy(throttle.Policy{Rate: 1, Burst: 3}))
			for i, want := range []bool{true, true, true, false} {
				if i == 2 {
					// the server loses its functions and scripts (as after a
					// restart without persistence)
					if err := admin.FunctionFlush(ctx).Err(); err != nil {
						t.Fatal(err)
					}
					if err := admin.ScriptFlush(ctx).Err(); err != nil {
						t.Fatal(err)
					}
				}
				if r := mustAllowN(t, l, "acme", 1); r.Allowed != want {
					t.Fatalf("decision %d: %+v, want allowed %v", i, r, want)
				}
			}
			if got := runs.Last(); got != tc.want {
				t.Fatalf("decisions ran as %q, want %q", got, tc.want)
			}
			libs, err := admin.FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: "quotaq_*"}).Result()
			if err != nil {
				t.Fatal(err)
			}
			if loaded := len(libs) > 0; loaded != (tc.want == "fcall") {
				t.Fatalf("function libraries on the server: %v, want some only when decisions ran as a function", libs)
			}
		})
	}
}
