package main

import (
	"context"
	"fmt"
)

func runBench(ctx context.Context, env *cliEnv, args []string) error {
	return fmt.Errorf("not written yet")
}
