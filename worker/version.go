package worker

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/quotaq/quotaq/throttle"
)

// SupportedAsynq names the asynq versions the Throttler is tested with.
// Re-queueing a throttled task relies on asynq's key layout, on asynq not
// deleting a task whose Done it retries with an already-cancelled context,
// and on the text of asynq's log lines: none of them is part of asynq's API,
// so another version may lose or duplicate tasks.
const SupportedAsynq = "v0.26.x"

// ErrUnsupportedAsynq is matched (errors.Is) by NewChecked's error when the
// program links an asynq version other than SupportedAsynq.
var ErrUnsupportedAsynq = errors.New("worker: unsupported asynq version")

// CheckAsynq reports whether the asynq linked into the program is one the
// Throttler supports (SupportedAsynq). It reads the program's build
// information; when there is none (some test binaries), or asynq is replaced
// by a local directory without a version, it accepts.
func CheckAsynq() error {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	for _, m := range bi.Deps {
		if m.Path != "github.com/hibiken/asynq" {
			continue
		}
		if m.Replace != nil {
			m = m.Replace
		}
		return checkAsynqVersion(m.Version)
	}
	return nil
}

// checkAsynqVersion checks a module version as the build information gives
// it ("v0.26.0"); "" or "(devel)" (a local replacement) is accepted.
func checkAsynqVersion(v string) error {
	if v == "" || v == "(devel)" || strings.HasPrefix(v, "v0.26.") {
		return nil
	}
	return fmt.Errorf("%w: the program links github.com/hibiken/asynq %s, but quotaq's worker supports %s only "+
		"(it relies on asynq internals that other versions may change, losing or duplicating tasks): "+
		"pin it with `go get github.com/hibiken/asynq@v0.26.0`, or use worker.New to skip this check once you have tested your version",
		ErrUnsupportedAsynq, v, SupportedAsynq)
}

// NewChecked is New after CheckAsynq: it returns ErrUnsupportedAsynq, and
// no Throttler, when the program links an asynq version the Throttler is not
// tested with. Programs should use it; New does not check, for a program
// that has tested its asynq version itself.
func NewChecked(l *throttle.Limiter, asynqRedis redis.UniversalClient, opts ...Option) (*Throttler, error) {
	if err := CheckAsynq(); err != nil {
		return nil, err
	}
	return New(l, asynqRedis, opts...), nil
}

// BuildVersion describes the running program's build for --version and bug
// reports, as the Go toolchain recorded it: the main module's version, the
// VCS revision, its time and whether the tree had uncommitted changes, and
// the asynq version linked: "v1.2.0 (revision 4ce2d3e1a2b3,
// 2026-11-30T19:20:00Z) asynq v0.26.0". Parts the build did not record
// (a build outside a repository, go run) are left out; the version is
// "(devel)" when there is none.
func BuildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel) (no build information)"
	}
	return buildVersion(bi)
}

// release is the version a build names itself where the toolchain cannot
// know it (a source tree without its .git, as in the Dockerfile):
// -ldflags "-X github.com/quotaq/quotaq/worker.release=v1.2.0". It stands in
// for the module version "(devel)".
var release string

func buildVersion(bi *debug.BuildInfo) string {
	return describeBuild(bi, release)
}

// describeBuild is buildVersion with rel as the release a build named.
func describeBuild(bi *debug.BuildInfo, rel string) string {
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "(devel)"
		if rel != "" {
			v = rel
		}
	}
	var vcs []string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && s.Value != "":
			rev := s.Value
			if len(rev) > 12 {
				rev = rev[:12]
			}
			vcs = append([]string{"revision " + rev}, vcs...)
		case s.Key == "vcs.time" && s.Value != "":
			vcs = append(vcs, s.Value)
		case s.Key == "vcs.modified" && s.Value == "true":
			vcs = append(vcs, "modified")
		}
	}
	if len(vcs) > 0 {
		v += " (" + strings.Join(vcs, ", ") + ")"
	}
	for _, m := range bi.Deps {
		if m.Path == "github.com/hibiken/asynq" {
			if m.Replace != nil {
				m = m.Replace
			}
			v += " asynq " + m.Version
		}
	}
	return v
}
