// Package dashboard holds the admin dashboard's browser assets: one HTML
// page, one ES module and one stylesheet, written by hand and embedded in
// the binary. There is no front-end build: six pages of tables, forms and
// a few SVG charts need no framework, and without a build step what is
// served is what is in the repository.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"path"
)

//go:embed assets
var files embed.FS

// Asset is one of the dashboard's files, ready to serve.
type Asset struct {
	Body        []byte
	ContentType string
	// ETag is a strong validator: the quoted start of Body's SHA-256.
	ETag string
	// Version is what the page appends to the file's URL ("?v=" + Version)
	// so that a browser may keep it for good: a new binary with a changed
	// file names it by a new URL. Empty for the page itself.
	Version string
}

// Assets are the dashboard's page and the files it loads, by name.
type Assets struct {
	// Page is index.html, naming app.js and app.css by version.
	Page Asset
	// Files are app.js and app.css.
	Files map[string]Asset
}

// Load reads the embedded files and names the script and stylesheet in the
// page by content version. Without versions a browser must fetch and
// compile the whole script on every page load; with them it takes its
// cached copy and, from the third load, V8's compiled code
// (docs/benchmarks.md, "Admin dashboard pages").
func Load() (*Assets, error) {
	// The files index.html refers to, as it spells them.
	versioned := []string{"app.js", "app.css"}
	a := &Assets{Files: make(map[string]Asset, len(versioned))}
	page, err := fs.ReadFile(files, "assets/index.html")
	if err != nil {
		return nil, fmt.Errorf("read dashboard page: %w", err)
	}
	for _, name := range versioned {
		body, err := fs.ReadFile(files, "assets/"+name)
		if err != nil {
			return nil, fmt.Errorf("read dashboard file: %w", err)
		}
		f := newAsset(name, body)
		f.Version = f.ETag[1:13]
		ref := []byte(`"` + name + `"`)
		if bytes.Count(page, ref) != 1 {
			return nil, fmt.Errorf("name %s in dashboard page: found %d references, want 1", name, bytes.Count(page, ref))
		}
		page = bytes.Replace(page, ref, []byte(`"`+name+"?v="+f.Version+`"`), 1)
		a.Files[name] = f
	}
	a.Page = newAsset("index.html", page)
	return a, nil
}

func newAsset(name string, body []byte) Asset {
	sum := sha256.Sum256(body)
	return Asset{Body: body, ContentType: mime.TypeByExtension(path.Ext(name)),
		ETag: `"` + hex.EncodeToString(sum[:12]) + `"`}
}
