package worker

import (
	"errors"
	"runtime/debug"
	"strings"
	"testing"
)

// TestAsynqVersionCheck: the tested asynq minor version passes, whatever its
// patch or pseudo-version; any other is refused with ErrUnsupportedAsynq,
// naming the version found and the supported ones; no version (a local
// replacement) is accepted.
func TestAsynqVersionCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		version string
		ok      bool
	}{
		{"v0.26.0", true},
		{"v0.26.3", true},
		{"v0.26.1-0.20260101000000-abcdef123456", true},
		{"", true},
		{"(devel)", true},
		{"v0.25.1", false},
		{"v0.27.0", false},
		{"v0.260.0", false},
		{"v1.0.0", false},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			t.Parallel()
			err := checkAsynqVersion(tt.version)
			if tt.ok {
				if err != nil {
					t.Errorf("checkAsynqVersion(%q) = %v, want nil", tt.version, err)
				}
				return
			}
			if !errors.Is(err, ErrUnsupportedAsynq) || !strings.Contains(err.Error(), tt.version) || !strings.Contains(err.Error(), SupportedAsynq) {
				t.Errorf("checkAsynqVersion(%q) = %v, want ErrUnsupportedAsynq naming %s and %s", tt.version, err, tt.version, SupportedAsynq)
			}
		})
	}
	// this test binary links the go.mod's asynq, which is supported
	if err := CheckAsynq(); err != nil {
		t.Errorf("CheckAsynq() = %v with the asynq of go.mod", err)
	}
}

func TestBuildVersionSaysWhatTheBuildRecorded(t *testing.T) {
	t.Parallel()
	asynqDep := []*debug.Module{{Path: "github.com/hibiken/asynq", Version: "v0.26.0"}}
	vcs := []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "4ce2d3e1a2b3c4d5e6f708192a3b4c5d6e7f8091"},
		{Key: "vcs.time", Value: "2026-11-30T19:20:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	cases := []struct {
		name    string
		bi      debug.BuildInfo
		release string // -ldflags -X worker.release
		want    string
	}{
		{"Release", debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}, Deps: asynqDep}, "", "v1.2.0 asynq v0.26.0"},
		{"NamedByTheBuild", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Deps: asynqDep}, "v1.3.0-rc1", "v1.3.0-rc1 asynq v0.26.0"},
		{"ModuleVersionWins", debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}, Deps: asynqDep}, "v9", "v1.2.0 asynq v0.26.0"},
		{"FromARepository", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs, Deps: asynqDep}, "",
			"(devel) (revision 4ce2d3e1a2b3, 2026-11-30T19:20:00Z, modified) asynq v0.26.0"},
		{"CleanTree", debug.BuildInfo{Main: debug.Module{Version: "v1.2.1"}, Settings: vcs[:3], Deps: asynqDep}, "",
			"v1.2.1 (revision 4ce2d3e1a2b3, 2026-11-30T19:20:00Z) asynq v0.26.0"},
		{"NothingRecorded", debug.BuildInfo{}, "", "(devel)"},
		{"AsynqReplaced", debug.BuildInfo{Main: debug.Module{Version: "v1.0.0"},
			Deps: []*debug.Module{{Path: "github.com/hibiken/asynq", Version: "v0.26.0", Replace: &debug.Module{Path: "../asynq", Version: "(devel)"}}}},
			"", "v1.0.0 asynq (devel)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := describeBuild(&tc.bi, tc.release); got != tc.want {
				t.Errorf("describeBuild(%q) = %q, want %q", tc.release, got, tc.want)
			}
		})
	}
}
