package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/visage/visage/api"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/internal/backend"
	"github.com/visage/visage/internal/config"
	"github.com/visage/visage/store"
)

// runKeys manages API keys in visaged's data directory.
func runKeys(ctx context.Context, env *cliEnv, args []string) error {
	const usage = "usage: visage keys create --role admin|enroll|identify|read [--collection NAME] [--name TEXT] | list | revoke ID  [--data DIR | --database-url URL]"
	if len(args) == 0 {
		return fmt.Errorf(usage)
	}
	fs := flag.NewFlagSet("keys "+args[0], flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	data := fs.String("data", "", "visaged's data directory (default $VISAGE_DATA_DIR or ~/.local/share/visage/data)")
	var bcfg backend.Config
	bcfg.RegisterFlags(fs)
	role := fs.String("role", "", "admin, enroll, identify or read")
	collection := fs.String("collection", "", "restrict the key to one collection")
	name := fs.String("name", "", "what the key is for")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	bcfg.DataDir = config.DataDir(*data)
	st, err := backend.OpenStore(ctx, bcfg)
	if err != nil {
		return err
	}
	defer st.Close()
	switch args[0] {
	case "create":
		r := store.Role(*role)
		if !r.Valid() {
			return fmt.Errorf("--role must be admin, enroll, identify or read")
		}
		if *name == "" {
			*name = string(r) + " key"
		}
		if err := gallery.CheckKeyName(*name); err != nil {
			return fmt.Errorf("--name: %w", err)
		}
		id, token := api.NewKeyToken()
		k, err := st.CreateKey(ctx, store.APIKey{ID: id, Name: *name, Hash: api.HashToken(token), Role: r, Collection: *collection})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stderr, "created key %s (role %s); the secret below is shown only this once\n", k.ID, k.Role)
		fmt.Fprintln(env.stdout, token)
		return nil
	case "list":
		keys, err := st.ListKeys(ctx)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(env.stdout)
		for _, k := range keys {
			if err := enc.Encode(k); err != nil {
				return err
			}
		}
		return nil
	case "revoke":
		if fs.NArg() != 1 {
			return fmt.Errorf(usage)
		}
		if err := st.RevokeKey(ctx, fs.Arg(0)); err != nil {
			return err
		}
		fmt.Fprintf(env.stderr, "revoked key %s\n", fs.Arg(0))
		return nil
	}
	return fmt.Errorf(usage)
}
