module github.com/visage/visage/tools/gofaceparity

go 1.26.0

require (
	github.com/Kagami/go-face v0.0.0-20210630145111-0c14797b4d0e
	github.com/visage/visage v0.0.0
)

require golang.org/x/image v0.48.0 // indirect

replace github.com/visage/visage => ../..
