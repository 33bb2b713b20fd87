// Package dashboard holds the admin dashboard's browser assets: one HTML
// page, one ES module and one stylesheet, written by hand and embedded in
// the binary. There is no front-end build: six pages of tables, forms and
// a few SVG charts need no framework, and without a build step what is
// served is what is in the repository.
package dashboard

import (
	"embed"
	"io/fs"
)

//go:embed assets
var files embed.FS

// Assets returns the dashboard's files: index.html, app.js, app.css.
func Assets() fs.FS {
	sub, err := fs.Sub(files, "assets")
	if err != nil {
		panic(err) // the directory is embedded above
	}
	return sub
}
