package deploy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

func parseDockerfile(src string) []instruction {
	var out []instruction
	var cur strings.Builder
	for line := range strings.Lines(src) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// fromImage returns the image of a FROM instruction's arguments, without
// flags and stage name, with global ARG defaults substituted.
func fromImage(args string, globals map[string]string) string {
	fields := slices.DeleteFunc(strings.Fields(args), func(f string) bool { return strings.HasPrefix(f, "--") })
	if len(fields) == 0 {
		return ""
	}
	return os.Expand(fields[0], func(k string) string { return globals[k] })
}

// TestDockerfile: multi-stage, the final stage on Debian slim, running as
// a non-root user.
func TestDockerfile(t *testing.T) {
	src, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	ins := parseDockerfile(string(src))

	globals := map[string]string{} // ARGs before the first FROM
	var froms []int
	for i, in := range ins {
		switch {
		case in.cmd == "FROM":
			froms = append(froms, i)
		case in.cmd == "ARG" && len(froms) == 0:
			k, v, _ := strings.Cut(in.args, "=")
			globals[k] = v
		}
	}
	if len(froms) < 2 {
		t.Fatalf("%d FROM lines; want a multi-stage build", len(froms))
	}
	last := froms[len(froms)-1]
	final := fromImage(ins[last].args, globals)
	if !regexp.MustCompile(`^debian:[^@\s]+-slim(@sha256:[0-9a-f]{64})?$`).MatchString(final) {
		t.Errorf("final stage FROM %q; want debian:<release>-slim", final)
	}

	var user string
	var expose, entry []string
	for _, in := range ins[last+1:] {
		switch in.cmd {
		case "USER":
			user = in.args
		case "EXPOSE":
			expose = append(expose, strings.Fields(in.args)...)
		case "ENTRYPOINT":
			entry = append(entry, in.args)
		}
	}
	name, _, _ := strings.Cut(user, ":")
	if name == "" || name == "root" || name == "0" {
		t.Errorf("final stage USER %q; want a non-root user", user)
	}
	if !slices.Contains(expose, "8080") && !slices.Contains(expose, "8080/tcp") {
		t.Errorf("final stage EXPOSE %v; want 8080", expose)
	}
	if len(entry) == 0 || !strings.Contains(entry[len(entry)-1], "visaged") {
		t.Errorf("final stage ENTRYPOINT %v; want visaged", entry)
	}
}
