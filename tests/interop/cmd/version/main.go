// Command version prints the versions of the Go modules this peer module is built from, as
// JSON, so a test can check that the Go side it compares against is the pinned one.
package main

import (
	"encoding/json"
	"os"
	"runtime/debug"

	_ "github.com/bubustack/bubu-sdk-go"
	_ "github.com/bubustack/core/templating"
	_ "github.com/bubustack/tractatus/gen/go/proto/transport/v1"
)

func main() {
	versions := map[string]string{"go": "unknown"}
	if info, ok := debug.ReadBuildInfo(); ok {
		versions["go"] = info.GoVersion
		for _, dep := range info.Deps {
			versions[dep.Path] = dep.Version
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(versions); err != nil {
		os.Exit(1)
	}
}
