package httplimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/quotaq/quotaq/throttle"
)

// slotNames names requests among those in flight: a random prefix of the
// Middleware, then a counter.
type slotNames struct {
	prefix string
	n      atomic.Uint64
}

func newSlotNames() *slotNames {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &slotNames{prefix: "http-" + hex.EncodeToString(b) + "-"}
}

func (s *slotNames) next() string { return s.prefix + strconv.FormatUint(s.n.Add(1), 10) }

// holdSlot keeps the concurrency slot a request took while it is served:
// renewed every third of throttle.DefaultSlotTTL, released when the
// function it returns is called (when the handler has returned). A server
// that dies frees it when it runs out.
func (m *Middleware) holdSlot(r *http.Request, key, slot string) (release func()) {
	ctx := context.WithoutCancel(r.Context())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(throttle.DefaultSlotTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			if _, err := m.lim.RenewSlot(rctx, slot, throttle.DefaultSlotTTL, key); err != nil {
				m.log.Warn("httplimit: could not renew a request's concurrency slot", "key", key, "err", err)
			}
			cancel()
		}
	}()
	return func() {
		close(stop)
		<-done
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := m.lim.ReleaseSlot(rctx, slot, key); err != nil {
			m.log.Warn("httplimit: could not release a request's concurrency slot; it frees when it runs out",
				"key", key, "slot_ttl", throttle.DefaultSlotTTL, "err", err)
		}
	}
}
