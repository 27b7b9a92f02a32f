package modcheck

import (
	"bytes"
	"go/version"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// modules are the repository's go.mod files, by directory from the root.
var modules = []string{".", "bench", "internal/composecheck", "deploy", "e2e/browser"}

// minGo reads a module's build list with `go list -m all` and returns the
// go line of its go.mod and the newest go line among its dependencies,
// naming the dependency that sets it.
func minGo(t *testing.T, dir string) (own, deps, by string) {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{if .Main}}main{{else}}dep{{end}} {{.Path}} {{.GoVersion}}", "all")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m all in %s: %v\n%s", dir, err, stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 { // a dependency whose go.mod has no go line
			continue
		}
		switch {
		case f[0] == "main":
			own = f[2]
		case deps == "" || version.Compare("go"+f[2], "go"+deps) > 0:
			deps, by = f[2], f[1]
		}
	}
	return own, deps, by
}

// The go line of each go.mod is exactly the newest go line among the
// module's dependencies: lower would not build, higher would force users
// onto a newer Go for nothing. (`go vet` in scripts/test.sh then checks that
// the code itself uses no language feature or standard library API newer
// than that line.)
func TestGoLineIsTheDependenciesMinimum(t *testing.T) {
	t.Parallel()
	for _, mod := range modules {
		t.Run(mod, func(t *testing.T) {
			t.Parallel()
			own, deps, by := minGo(t, filepath.Join("..", "..", mod))
			if own == "" {
				t.Fatalf("%s/go.mod has no go line", mod)
			}
			if own != deps {
				t.Errorf("%s/go.mod says go %s, but the newest its dependencies need is go %s (%s): set `go %s` there",
					mod, own, deps, by, deps)
			}
		})
	}
}
