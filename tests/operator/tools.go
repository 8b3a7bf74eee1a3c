//go:build tools

// Package tools pins the BubuStack operator (bobrapet) so `go build` can build its manager
// from the module proxy. Nothing here is compiled into a test binary.
package tools

import _ "github.com/bubustack/bobrapet/cmd"
