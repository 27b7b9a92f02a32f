package worker

import (
	"errors"
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
