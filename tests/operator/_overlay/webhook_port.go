// This file is ours, not bobrapet's. The test build adds it to the manager's `package main`
// with `go build -overlay` (see tests/_controlplane/build.py); nothing else is changed.
//
// Why: cmd/main.go leaves the webhook server on controller-runtime's default port (9443, every
// interface) and has no flag for it. Several test sessions share one machine, each with its
// own operator, so each needs its own port. controller-runtime reads the default from a package
// variable when the server is built, after every init() has run; setting it here is enough.

package main

import (
	"fmt"
	"os"
	"strconv"

	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

func init() {
	raw := os.Getenv("BUBU_TEST_WEBHOOK_PORT")
	if raw == "" {
		return
	}
	port, err := strconv.Atoi(raw)
	if err != nil || port <= 0 || port > 65535 {
		fmt.Fprintf(os.Stderr, "BUBU_TEST_WEBHOOK_PORT=%q is not a TCP port\n", raw)
		os.Exit(2)
	}
	webhook.DefaultPort = port
}
