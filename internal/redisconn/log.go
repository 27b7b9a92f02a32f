package redisconn

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SetRedisLogger sends go-redis's own log lines (connection pool and dial
// failures, which go-redis otherwise prints raw to stderr) to logger, at
// Warn, as structured records with the text under "msg". go-redis has one
// logger per process: the last call wins.
func SetRedisLogger(logger *slog.Logger) {
	redis.SetLogger(redisLogger{logger})
}

// redisLogger adapts slog to go-redis's logging interface.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	if !strings.HasPrefix(msg, "redis:") {
		msg = "redis: " + msg
	}
	r.l.WarnContext(ctx, msg, "source", "go-redis")
}
