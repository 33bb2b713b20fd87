package api

import _ "embed"

//go:embed openapi.json
var openAPIDocument []byte

// OpenAPIDocument is the OpenAPI 3 description of the API, the contract
// the handlers are tested against.
func OpenAPIDocument() []byte { return openAPIDocument }
