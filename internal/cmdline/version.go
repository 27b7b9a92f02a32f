package cmdline

import (
	"runtime"

	"github.com/quotaq/quotaq/worker"
)

// Version is the line --version prints: the program, quotaq's version and
// the revision it was built from, asynq's version and Go's.
func Version(prog string) string {
	return prog + " " + worker.BuildVersion() + " " + runtime.Version()
}
