// Package api will hold the gin HTTP server: routes, handlers,
// middleware, the OpenAPI document and the error mapping (see
// ../shared/DESIGN.md). It is empty until the gallery service issue.
package api
