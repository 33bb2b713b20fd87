package deploy

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"
)

// The deployment files, relative to this package's directory.
const (
	composePath    = "../../docker-compose.yml"
	dockerfilePath = "../../Dockerfile"
)

const (
	notInstalled   = "docker-compose not installed: run ./scripts/setup.sh"
	composeTimeout = 60 * time.Second
	probeTimeout   = 10 * time.Second
)

// secrets are the variables docker-compose.yml must require, with test values.
var secrets = map[string]string{
	"POSTGRES_PASSWORD":          "pg-test-5f1c0a9e",
	"QDRANT_API_KEY":             "qdrant-test-7d2b4c61",
	"VISAGE_BOOTSTRAP_ADMIN_KEY": "admin-test-0123456789abcdef",
}

// composeFile is the part of `docker-compose config`'s output the tests read.
type composeFile struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string                `yaml:"image"`
	Build       any                   `yaml:"build"`
	DependsOn   map[string]dependency `yaml:"depends_on"`
	Environment map[string]string     `yaml:"environment"`
	Healthcheck *healthcheck          `yaml:"healthcheck"`
	Volumes     []any                 `yaml:"volumes"` // "src:dst[:mode]" or {source, target}
	Ports       []any                 `yaml:"ports"`   // "[host:]port" or {target, published}
}

type dependency struct {
	Condition string `yaml:"condition"`
}

type healthcheck struct {
	Test    []string `yaml:"test"`
	Disable bool     `yaml:"disable"`
}

// runCompose runs docker-compose on the repository's compose file with a
// clean environment: PATH, a temporary HOME and vars only, and an empty env
// file, so that neither the caller's environment nor a .env file beside the
// compose file can supply a value.
func runCompose(t *testing.T, vars map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatalf("%s (%v)", notInstalled, err)
	}
	file, err := filepath.Abs(composePath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	envFile := filepath.Join(dir, "empty.env")
	if err := os.WriteFile(envFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), composeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--env-file", envFile, "--file", file}, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		cmd.Env = append(cmd.Env, k+"="+vars[k])
	}
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("docker-compose %s: no answer within %v\n%s", strings.Join(args, " "), composeTimeout, errOut.String())
	}
	return out.String(), errOut.String(), err
}

// loadConfig returns the compose file as docker-compose resolves it with
// the test secrets set.
func loadConfig(t *testing.T) composeFile {
	t.Helper()
	stdout, stderr, err := runCompose(t, secrets, "config")
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, stderr)
	}
	var cf composeFile
	if err := yaml.Load([]byte(stdout), &cf); err != nil {
		t.Fatalf("parse docker-compose config output: %v\n%s", err, stdout)
	}
	return cf
}

func TestComposeConfig(t *testing.T) {
	cf := loadConfig(t)

	if got, want := slices.Sorted(maps.Keys(cf.Services)), []string{"postgres", "qdrant", "visaged"}; !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	pg, qd, vd := cf.Services["postgres"], cf.Services["qdrant"], cf.Services["visaged"]

	for _, name := range []string{"postgres", "qdrant", "visaged"} {
		hc := cf.Services[name].Healthcheck
		if hc == nil || hc.Disable || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
			t.Errorf("%s: no healthcheck (%+v)", name, hc)
		}
	}
	for _, dep := range []string{"postgres", "qdrant"} {
		if got := vd.DependsOn[dep].Condition; got != "service_healthy" {
			t.Errorf("visaged depends_on %s: condition %q, want service_healthy", dep, got)
		}
	}

	if !strings.HasPrefix(pg.Image, "postgres:") {
		t.Errorf("postgres image %q", pg.Image)
	}
	if !strings.HasPrefix(qd.Image, "qdrant/qdrant:v1.") {
		t.Errorf("qdrant image %q, want a pinned qdrant/qdrant:v1.x tag", qd.Image)
	}
	if vd.Build == nil {
		t.Error("visaged: not built from the local Dockerfile")
	}

	// Named volumes (declared at the top level) for the two stateful
	// services; none for the stateless visaged.
	for _, c := range []struct{ service, target string }{
		{"postgres", "/var/lib/postgresql/data"},
		{"qdrant", "/qdrant/storage"},
	} {
		m, err := mounts(cf.Services[c.service].Volumes)
		if err != nil {
			t.Errorf("%s volumes: %v", c.service, err)
			continue
		}
		src, ok := m[c.target]
		if _, named := cf.Volumes[src]; !ok || !named {
			t.Errorf("%s: %s is not on a named volume (mounts %v, volumes %v)", c.service, c.target, m, slices.Sorted(maps.Keys(cf.Volumes)))
		}
	}
	if len(vd.Volumes) != 0 {
		t.Errorf("visaged has volumes %v; in scale-out mode it is stateless", vd.Volumes)
	}

	// Only visaged is published.
	for _, name := range []string{"postgres", "qdrant"} {
		if p := cf.Services[name].Ports; len(p) != 0 {
			t.Errorf("%s publishes ports %v", name, p)
		}
	}
	if ports, err := containerPorts(vd.Ports); err != nil || !slices.Contains(ports, 8080) || slices.Contains(ports, 9090) {
		t.Errorf("visaged ports %v (%v): want container port 8080 published and the metrics port 9090 not", vd.Ports, err)
	}

	// The secrets arrive where they are used, and the addresses match the
	// services.
	for _, c := range []struct{ service, key, want string }{
		{"postgres", "POSTGRES_USER", "visage"},
		{"postgres", "POSTGRES_DB", "visage"},
		{"postgres", "POSTGRES_PASSWORD", secrets["POSTGRES_PASSWORD"]},
		{"qdrant", "QDRANT__SERVICE__API_KEY", secrets["QDRANT_API_KEY"]},
		{"visaged", "VISAGE_ADDR", "0.0.0.0:8080"},
		{"visaged", "VISAGE_DATABASE_URL", "postgres://visage:" + secrets["POSTGRES_PASSWORD"] + "@postgres:5432/visage?sslmode=disable"},
		{"visaged", "VISAGE_QDRANT_ADDR", "qdrant:6334"},
		{"visaged", "VISAGE_QDRANT_API_KEY", secrets["QDRANT_API_KEY"]},
		{"visaged", "VISAGE_BOOTSTRAP_ADMIN_KEY", secrets["VISAGE_BOOTSTRAP_ADMIN_KEY"]},
		// Metrics on an address of their own, not published, without
		// collection names.
		{"visaged", "VISAGE_METRICS_ADDR", "0.0.0.0:9090"},
		{"visaged", "VISAGE_METRICS_COLLECTIONS", "false"},
	} {
		got, ok := cf.Services[c.service].Environment[c.key]
		if !ok || got != c.want {
			t.Errorf("%s: %s = %q (set %v), want %q", c.service, c.key, got, ok, c.want)
		}
	}
	if u, err := url.Parse(vd.Environment["VISAGE_DATABASE_URL"]); err != nil || u.Hostname() != "postgres" {
		t.Errorf("VISAGE_DATABASE_URL does not parse as a URL to host postgres: %v", err)
	}
}

// TestComposeRequiresSecrets: without any one of the secrets, or with it
// empty, docker-compose refuses the file and names the variable; no
// reference to a secret may carry a default.
func TestComposeRequiresSecrets(t *testing.T) {
	raw, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("references", func(t *testing.T) {
		names := strings.Join(slices.Sorted(maps.Keys(secrets)), "|")
		re := regexp.MustCompile(`\$(\{)?(` + names + `)\b(:\?)?`)
		refs := 0
		for _, m := range re.FindAllSubmatchIndex(raw, -1) {
			if m[0] > 0 && raw[m[0]-1] == '$' {
				continue // $$NAME: the container's variable, not interpolated
			}
			refs++
			if m[2] < 0 || m[6] < 0 {
				t.Errorf("%q: a secret must be referenced as ${NAME:?message} (required, no default)", raw[m[0]:m[1]])
			}
		}
		if refs == 0 {
			t.Error("docker-compose.yml references none of the secrets")
		}
	})

	for _, name := range slices.Sorted(maps.Keys(secrets)) {
		for _, mode := range []string{"unset", "empty"} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				t.Parallel()
				vars := maps.Clone(secrets)
				if mode == "unset" {
					delete(vars, name)
				} else {
					vars[name] = ""
				}
				stdout, stderr, err := runCompose(t, vars, "config", "--quiet")
				var exit *exec.ExitError
				switch {
				case err == nil:
					t.Fatalf("docker-compose config succeeded with %s %s (a default?)\n%s", name, mode, stdout)
				case !errors.As(err, &exit):
					t.Fatalf("docker-compose config: %v", err)
				}
				if !strings.Contains(stderr, name) {
					t.Errorf("the error does not name %s:\n%s", name, stderr)
				}
			})
		}
	}
}

// TestHealthcheckProbes runs the bash /dev/tcp probes of qdrant and visaged
// against a local server: healthy on 200 from /readyz, unhealthy on 503 and
// when nothing listens.
func TestHealthcheckProbes(t *testing.T) {
	cf := loadConfig(t)
	for _, c := range []struct{ service, port string }{{"qdrant", "6333"}, {"visaged", "8080"}} {
		t.Run(c.service, func(t *testing.T) {
			hc := cf.Services[c.service].Healthcheck
			if hc == nil || len(hc.Test) < 4 || hc.Test[0] != "CMD" || hc.Test[1] != "bash" || hc.Test[2] != "-c" {
				t.Skipf("not a bash probe: %v", hc)
			}
			var status atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/readyz" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(int(status.Load()))
			}))
			defer srv.Close()
			u, _ := url.Parse(srv.URL)
			from, to := "/dev/tcp/127.0.0.1/"+c.port, "/dev/tcp/127.0.0.1/"+u.Port()
			if !strings.Contains(hc.Test[3], from) {
				t.Fatalf("the probe does not connect to %s: %q", from, hc.Test[3])
			}
			script := strings.Replace(hc.Test[3], from, to, 1)
			probe := func() error {
				ctx, cancel := context.WithTimeout(t.Context(), probeTimeout)
				defer cancel()
				out, err := exec.CommandContext(ctx, "bash", "-c", script).CombinedOutput()
				if ctx.Err() != nil {
					t.Fatalf("probe hung: %s", out)
				}
				return err
			}
			for _, code := range []int{http.StatusOK, http.StatusServiceUnavailable} {
				status.Store(int32(code))
				if err := probe(); (err == nil) != (code == http.StatusOK) {
					t.Errorf("/readyz %d: probe error %v", code, err)
				}
			}
			srv.Close()
			if err := probe(); err == nil {
				t.Error("probe succeeded with nothing listening")
			}
		})
	}
}

// mounts maps each mount target to its source.
func mounts(vols []any) (map[string]string, error) {
	m := make(map[string]string)
	for _, v := range vols {
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				return nil, errors.New("anonymous volume " + v)
			}
			m[parts[1]] = parts[0]
		case map[string]any:
			src, _ := v["source"].(string)
			dst, _ := v["target"].(string)
			m[dst] = src
		default:
			return nil, errors.New("unknown volume syntax")
		}
	}
	return m, nil
}

// containerPorts lists the container ports of a service's ports entries.
func containerPorts(ports []any) ([]int, error) {
	var out []int
	for _, p := range ports {
		switch p := p.(type) {
		case int:
			out = append(out, p)
		case string:
			s := p[strings.LastIndex(p, ":")+1:]
			s, _, _ = strings.Cut(s, "/")
			n, err := strconv.Atoi(s)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		case map[string]any:
			n, ok := p["target"].(int)
			if !ok {
				return nil, errors.New("port entry without a numeric target")
			}
			out = append(out, n)
		default:
			return nil, errors.New("unknown port syntax")
		}
	}
	return out, nil
}
