module github.com/visage/visage/tools/gofaceparity

go 1.26.0

require github.com/visage/visage v0.0.0

replace github.com/visage/visage => ../..
