package httplimit

import (
	"context"

	"github.com/quotaq/quotaq/throttle"
)

type resultKey struct{}

// Result returns the decision the middleware took on the request whose
// context is ctx, and the client's key; ok is false when the middleware did
// not decide (it was not in the chain, or Redis could not be reached and it
// failed open).
func Result(ctx context.Context) (r throttle.Result, key string, ok bool) {
	d, ok := ctx.Value(resultKey{}).(decided)
	return d.r, d.key, ok
}

type decided struct {
	r   throttle.Result
	key string
}

func withResult(ctx context.Context, key string, r throttle.Result) context.Context {
	return context.WithValue(ctx, resultKey{}, decided{r: r, key: key})
}
