//go:build tools

// Package tools pins the SeaweedFS server so `go build` can build its `weed` binary (master,
// volume, filer and S3 gateway in one process) from the module proxy. Nothing here is compiled
// into a test binary.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
