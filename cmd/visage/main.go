// Command visage is Visage's command-line tool: it prepares models, runs
// the face engine on images, and evaluates it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand: it parses its own flags from args.
type command struct {
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv carries the process's streams so commands are testable.
type cliEnv struct {
	stdout, stderr io.Writer
}

func commands() map[string]command {
	return map[string]command{
		"models":  {"prepare the model directory from the registries' packages", runModels},
		"detect":  {"print the faces found in images as JSON", runDetect},
		"compare": {"print the distance between the largest faces of two images", runCompare},
		"eval":    {"evaluate accuracy (eval lfw --images DIR --pairs FILE)", runEval},
		"bench":   {"measure the engine or the vector index (bench engine IMAGE... | bench index)", runBench},
		"keys":    {"manage API keys (keys create|list|revoke)", runKeys},
		"doctor":  {"report (--repair: fix) drift between the metadata store and the vector index", runDoctor},
		"reindex": {"rebuild the vector index from the metadata store", runReindex},
		"import":  {"enroll a local folder tree or manifest into a running visaged (import --dir DIR --collection NAME)", runImport},
	}
}

func main() {
	env := &cliEnv{stdout: os.Stdout, stderr: os.Stderr}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, env, os.Args[1:]))
}

func run(ctx context.Context, env *cliEnv, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.stderr, cmds)
		return 2
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "visage: unknown command %q\n\n", args[0])
		usage(env.stderr, cmds)
		return 2
	}
	if err := c.run(ctx, env, args[1:]); err != nil {
		fmt.Fprintf(env.stderr, "visage %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: visage COMMAND [flags] [args]\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-8s %s\n", n, cmds[n].summary)
	}
	b.WriteString("\nEvery command finds models in --models DIR, else $VISAGE_MODELS, else ~/.local/share/visage/models.\n")
	fmt.Fprint(w, b.String())
}
