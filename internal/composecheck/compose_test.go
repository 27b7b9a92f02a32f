package composecheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

// root is the repository, two levels up from this module.
var root = func() string {
	abs, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return abs
}()

func loadProject(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithResolvedPaths(true),
		cli.WithEnv(nil), // the file must not depend on the caller's environment
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load with the compose-spec parser: %v", err)
	}
	return p
}

// dockerfile is what the test reads from the Dockerfile.
type dockerfile struct {
	goImage string            // tag of the golang build image, e.g. "1.26-bookworm"
	bins    map[string]string // binary name -> package built into it
	binDir  string            // where the final stage puts them
}

var buildLine = regexp.MustCompile(`^RUN go build .*-o /out/(\S+) (\./\S+)\s*$`)

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := dockerfile{bins: map[string]string{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "FROM golang:"):
			d.goImage = strings.Fields(strings.TrimPrefix(line, "FROM golang:"))[0]
		case buildLine.MatchString(line):
			m := buildLine.FindStringSubmatch(line)
			d.bins[m[1]] = m[2]
		case strings.HasPrefix(line, "COPY --from=build /out/ "):
			d.binDir = strings.TrimSpace(strings.TrimPrefix(line, "COPY --from=build /out/ "))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return d
}

// built holds the Dockerfile's binaries, built once for the whole test run.
var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func binaries(t *testing.T) string {
	t.Helper()
	d := readDockerfile(t)
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "composecheck-")
		if buildErr != nil {
			return
		}
		for name, pkg := range d.bins {
			cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, name), pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build -o %s %s: %v\n%s", name, pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func TestComposeFileLoads(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	want := []string{"redis", "worker", "upstream", "enqueue"}
	all := p.AllServices()
	for _, name := range want {
		if _, ok := all[name]; !ok {
			t.Errorf("service %q is missing (have %v)", name, p.ServiceNames())
		}
	}
	for name, s := range all {
		if s.Image == "" && s.Build == nil {
			t.Errorf("service %q has neither image nor build", name)
		}
		if s.Build != nil {
			if s.Build.Context != root {
				t.Errorf("service %q builds from %q, want the repository root %q", name, s.Build.Context, root)
			}
			if df := s.Build.Dockerfile; df != "" && df != "Dockerfile" && df != filepath.Join(root, "Dockerfile") {
				t.Errorf("service %q builds with %q, want the root Dockerfile", name, df)
			}
		}
		for dep := range s.DependsOn {
			if _, ok := all[dep]; !ok {
				t.Errorf("service %q depends on %q, which is not a service", name, dep)
			}
		}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("service %q mounts volume %q, which is not declared", name, v.Source)
				}
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("service %q binds %q, which does not exist: %v", name, v.Source, err)
			}
		}
	}
	if all["enqueue"].Profiles == nil {
		t.Error(`service "enqueue" (the CLI) should be in a profile, so "docker compose up" does not start it`)
	}
	w := all["worker"]
	schedule := workerSettings(t, w)["schedule"]
	if schedule == "" {
		t.Errorf("the worker runs no schedule: command %q, settings %v", w.Command, workerSettings(t, w))
	} else if hostPath(w, schedule) == "" {
		t.Errorf("the worker's schedule %s is not in a bind mount", schedule)
	}
}

func slicesContainPrefix(args []string, prefix string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, prefix) {
			return true
		}
	}
	return false
}

func TestDockerfileBuildsTheCommands(t *testing.T) {
	t.Parallel()
	d := readDockerfile(t)
	if len(d.bins) == 0 {
		t.Fatal("the Dockerfile has no `RUN go build ... -o /out/NAME ./PKG` line")
	}
	if d.binDir != "/usr/local/bin/" && d.binDir != "/usr/local/bin" {
		t.Errorf("the final stage copies the binaries to %q, want /usr/local/bin (on PATH)", d.binDir)
	}
	goMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(goMod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	if !strings.HasPrefix(d.goImage, string(m[1])) {
		t.Errorf("the build image is golang:%s, but go.mod needs go %s", d.goImage, m[1])
	}
	for name, pkg := range d.bins {
		cmd := exec.Command("go", "list", "-f", "{{.Name}}", pkg)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil || strings.TrimSpace(string(out)) != "main" {
			t.Errorf("%s is built from %s, which is not a main package: %q %v", name, pkg, out, err)
		}
	}
	// Every binary a service of the image runs is one the Dockerfile builds.
	p := loadProject(t)
	for name, s := range p.AllServices() {
		if !runsTheImage(p, s) {
			continue
		}
		argv := append(append([]string{}, s.Entrypoint...), s.Command...)
		if len(argv) == 0 {
			t.Errorf("service %q runs the image's default command; name the binary", name)
			continue
		}
		if _, ok := d.bins[argv[0]]; !ok {
			t.Errorf("service %q runs %q, which the Dockerfile does not build (it builds %v)", name, argv[0], keys(d.bins))
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// helpFlag matches a flag line of Go's flag.PrintDefaults: "  -name value".
var helpFlag = regexp.MustCompile(`(?m)^\s{1,4}--?([A-Za-z0-9][A-Za-z0-9_.-]*)`)

func TestServiceCommandsUseRealFlags(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	d := readDockerfile(t)
	p := loadProject(t)
	for name, s := range p.AllServices() {
		if !runsTheImage(p, s) {
			continue
		}
		t.Run(name, func(t *testing.T) {
			argv := append(append([]string{}, s.Entrypoint...), s.Command...)
			if _, ok := d.bins[argv[0]]; !ok {
				t.Skipf("%q is not built by the Dockerfile (TestDockerfileBuildsTheCommands fails for it)", argv[0])
			}
			exe := filepath.Join(bin, argv[0])
			args := argv[1:]
			var sub []string // a subcommand ("status") comes first
			if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
				sub, args = args[:1], args[1:]
			}
			help := runHelp(t, exe, sub)
			if len(sub) > 0 { // the program's own help documents the shared flags and environment
				help += runHelp(t, exe, nil)
			}
			known := map[string]bool{}
			for _, m := range helpFlag.FindAllStringSubmatch(help, -1) {
				known[m[1]] = true
			}
			if len(known) == 0 && len(args) > 0 {
				t.Fatalf("%s %v --help lists no flags:\n%s", argv[0], sub, help)
			}
			for i := 0; i < len(args); i++ {
				a := args[i]
				if !strings.HasPrefix(a, "-") {
					t.Errorf("argument %q: the service passes a positional argument after the flags", a)
					continue
				}
				flagName, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				if !known[flagName] {
					t.Errorf("%s has no flag --%s (its --help lists %d flags)", argv[0], flagName, len(known))
				}
			}
			// The real flag parser accepts the whole command line: names,
			// and values (a bad duration or number is refused at parse time).
			cmd := exec.Command(exe, append(append(append([]string{}, sub...), args...), "--help")...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%s %q --help: %v\n%s", argv[0], append(sub, args...), err, out)
			}
			for _, bad := range []string{"unknown flag", "flag provided but not defined", "invalid value", "invalid boolean", "needs a value"} {
				if bytes.Contains(out, []byte(bad)) {
					t.Errorf("%s refuses the service's command line: %s", argv[0], out)
				}
			}
			// Environment: the Redis variables are documented in --help; the
			// QUOTAQ_<FLAG> variables must name a real flag.
			for key := range s.Environment {
				switch {
				case strings.HasPrefix(key, "QUOTAQ_"):
					f := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(key, "QUOTAQ_"), "_", "-"))
					if !known[f] {
						t.Errorf("environment %s: %s has no flag --%s", key, argv[0], f)
					}
				case !strings.Contains(help, key):
					t.Errorf("environment %s: %s --help does not mention it", key, argv[0])
				}
			}
			// Every published port is one the command listens on, on every
			// interface (the worker's metrics default to loopback, which a
			// published port cannot reach).
			settings := workerSettings(t, s)
			for _, p := range s.Ports {
				port := ":" + strconv.FormatUint(uint64(p.Target), 10)
				line := strings.Join(args, " ")
				for k, v := range settings {
					line += " --" + k + "=" + v
				}
				if !strings.Contains(line, port) {
					t.Errorf("port %d is published, but no flag of %q listens on %s", p.Target, args, port)
				}
				if strings.Contains(line, "127.0.0.1"+port) || strings.Contains(line, "localhost"+port) {
					t.Errorf("port %d is published, but %q listens on loopback only", p.Target, args)
				}
			}
		})
	}
}

// runHelp returns the --help text of exe (or of its subcommand).
func runHelp(t *testing.T, exe string, sub []string) string {
	t.Helper()
	cmd := exec.Command(exe, append(append([]string{}, sub...), "--help")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v --help: %v\n%s", filepath.Base(exe), sub, err, out)
	}
	return string(out)
}

// TestComposeRedisKeepsQuotaqsKeys: the quotaq services reach the compose
// file's Redis (never an embedded one, which the worker only starts when
// asked), and that Redis never evicts keys: a maxmemory-policy other than
// noeviction would let it drop limits and tasks, and the worker refuses it.
func TestComposeRedisKeepsQuotaqsKeys(t *testing.T) {
	t.Parallel()
	all := loadProject(t).AllServices()
	for name, s := range all {
		argv := append(append([]string{}, s.Entrypoint...), s.Command...)
		for i, a := range argv {
			if a == "--maxmemory-policy" && (i+1 >= len(argv) || argv[i+1] != "noeviction") {
				t.Errorf("service %q runs Redis with %q: only noeviction keeps quotaq's limits and tasks", name, argv[i:min(i+2, len(argv))])
			}
			if strings.HasPrefix(a, "--embedded") || strings.HasPrefix(a, "--allow-eviction") {
				t.Errorf("service %q passes %s: compose runs a real Redis that keeps its keys", name, a)
			}
		}
		for _, key := range []string{"QUOTAQ_EMBEDDED", "QUOTAQ_ALLOW_EVICTION"} {
			if _, ok := s.Environment[key]; ok {
				t.Errorf("service %q sets %s: compose runs a real Redis that keeps its keys", name, key)
			}
		}
		if len(argv) == 0 || (argv[0] != "quotaq-worker" && argv[0] != "quotaq-enqueue") {
			continue
		}
		if u, ok := s.Environment["REDIS_URL"]; (!ok || u == nil || *u == "") && !slicesContainPrefix(argv, "--redis-url") {
			t.Errorf("service %q runs %s without REDIS_URL or --redis-url", name, argv[0])
		}
	}
}

// builtImage is the image of the one service that builds the Dockerfile.
func builtImage(t *testing.T, p *types.Project) string {
	t.Helper()
	var builders []string
	image := ""
	for name, s := range p.AllServices() {
		if s.Build != nil {
			builders = append(builders, name)
			image = s.Image
		}
	}
	if len(builders) != 1 || image == "" {
		t.Fatalf("services %v build the Dockerfile, want one, which names its image (image: quotaq:local) for the others", builders)
	}
	return image
}

// runsTheImage reports whether s runs the project's own image.
func runsTheImage(p *types.Project, s types.ServiceConfig) bool {
	if s.Build != nil {
		return true
	}
	for _, o := range p.AllServices() {
		if o.Build != nil && o.Image == s.Image {
			return true
		}
	}
	return false
}

// hostPath is the file on this machine that a container path of s is bound
// to, or "".
func hostPath(s types.ServiceConfig, path string) string {
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if path == v.Target {
			return v.Source
		}
		if rel, ok := strings.CutPrefix(path, v.Target+"/"); ok {
			return filepath.Join(v.Source, rel)
		}
	}
	return ""
}

// workerSettings are a quotaq-worker service's settings by flag name, as
// the worker reads them: its config file (QUOTAQ_CONFIG, through its bind
// mount), then its QUOTAQ_* environment, then its command's flags. Other
// services have none.
func workerSettings(t *testing.T, s types.ServiceConfig) map[string]string {
	t.Helper()
	argv := append(append([]string{}, s.Entrypoint...), s.Command...)
	if len(argv) == 0 || argv[0] != "quotaq-worker" {
		return nil
	}
	settings := map[string]string{}
	if c := s.Environment["QUOTAQ_CONFIG"]; c != nil {
		file := hostPath(s, *c)
		if file == "" {
			t.Fatalf("QUOTAQ_CONFIG=%s is not in a bind mount of the worker", *c)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for k, v := range m {
			settings[k] = fmt.Sprint(v)
		}
	}
	for k, v := range s.Environment {
		if name, ok := strings.CutPrefix(k, "QUOTAQ_"); ok && v != nil {
			settings[strings.ToLower(strings.ReplaceAll(name, "_", "-"))] = *v
		}
	}
	for _, a := range argv[1:] {
		if k, v, ok := strings.Cut(strings.TrimLeft(a, "-"), "="); ok {
			settings[k] = v
		}
	}
	return settings
}

// TestImageIsBuiltOnce: one service builds the Dockerfile and names the
// image; every other service of the project's commands runs that image
// rather than building it again.
func TestImageIsBuiltOnce(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	image := builtImage(t, p)
	d := readDockerfile(t)
	for name, s := range p.AllServices() {
		argv := append(append([]string{}, s.Entrypoint...), s.Command...)
		if len(argv) == 0 {
			continue
		}
		if _, ours := d.bins[argv[0]]; ours && s.Image != image {
			t.Errorf("service %q runs %s from image %q, want the built %q", name, argv[0], s.Image, image)
		}
	}
}

// TestWorkerStopsWithinItsGracePeriod: Docker kills a container
// stop_grace_period after SIGTERM (10s by default); the worker needs its
// --shutdown-timeout (10s by default) and a few seconds more to hand
// unfinished tasks back to their queues.
func TestWorkerStopsWithinItsGracePeriod(t *testing.T) {
	t.Parallel()
	w := loadProject(t).AllServices()["worker"]
	shutdown := 10 * time.Second
	if v := workerSettings(t, w)["shutdown-timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("shutdown-timeout %q: %v", v, err)
		}
		shutdown = d
	}
	grace := 10 * time.Second
	if w.StopGracePeriod != nil {
		grace = time.Duration(*w.StopGracePeriod)
	}
	if grace < shutdown+5*time.Second {
		t.Errorf("stop_grace_period %s, shutdown-timeout %s: give the worker at least 5s more than its shutdown-timeout", grace, shutdown)
	}
}

// TestWorkerHealthcheckWorksInTheImage: the worker's healthcheck runs the
// worker's own healthcheck subcommand in exec form (the distroless image has
// no shell and no curl), with the worker's settings: run here against an
// address where nothing listens, it parses them all and reports the worker
// unhealthy (exit 1), not a configuration error (exit 2).
func TestWorkerHealthcheckWorksInTheImage(t *testing.T) {
	t.Parallel()
	w := loadProject(t).AllServices()["worker"]
	hc := w.HealthCheck
	if hc == nil || hc.Disable || len(hc.Test) < 3 {
		t.Fatalf("the worker has no healthcheck: %+v", hc)
	}
	if hc.Test[0] != "CMD" || hc.Test[1] != "quotaq-worker" || hc.Test[2] != "healthcheck" {
		t.Fatalf("healthcheck %q, want [CMD quotaq-worker healthcheck ...] (exec form: the image has no shell)", []string(hc.Test))
	}
	if hc.Timeout != nil && time.Duration(*hc.Timeout) <= 3*time.Second {
		t.Errorf("healthcheck timeout %s: the check itself waits up to 3s", time.Duration(*hc.Timeout))
	}
	cmd := exec.Command(filepath.Join(binaries(t), "quotaq-worker"), hc.Test[2:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	for k, v := range w.Environment {
		if v == nil {
			continue
		}
		val := *v
		if k == "QUOTAQ_CONFIG" {
			val = hostPath(w, val)
		}
		cmd.Env = append(cmd.Env, k+"="+val)
	}
	cmd.Env = append(cmd.Env, "QUOTAQ_METRICS_ADDR=127.0.0.1:1") // nothing listens there
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "unhealthy") || strings.Count(string(out), "\n") != 1 {
		t.Errorf("quotaq-worker healthcheck with the worker's settings and no worker: %v, %q; want exit 1 and one line saying unhealthy", err, out)
	}
}
