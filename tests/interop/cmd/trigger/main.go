// Command trigger submits one StoryTrigger through the Go SDK (sdk.StartStoryWithToken), so
// tests can compare what the Python SDK writes (the trigger body, offloaded input objects and
// their storage keys) with what Go writes, against the same kube-apiserver and store.
//
//	trigger < {"story": "...", "token": "...", "inputs": {...}}
//
// The environment is the impulse's: KUBECONFIG, BUBU_POD_NAMESPACE, BUBU_STORAGE_*,
// BUBU_MAX_INLINE_SIZE, BUBU_K8S_OPERATION_TIMEOUT. Without a controller the decision never
// comes; the StoryTrigger (and any offloaded object) is written before the wait, so the
// program prints {"error": "..."} and exits 0 either way.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	sdk "github.com/bubustack/bubu-sdk-go"
)

type request struct {
	Story  string         `json:"story"`
	Token  string         `json:"token"`
	Inputs map[string]any `json:"inputs"`
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var req request
	if err := json.Unmarshal(raw, &req); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := map[string]any{}
	run, err := sdk.StartStoryWithToken(context.Background(), req.Story, req.Token, req.Inputs)
	if err != nil {
		out["error"] = err.Error()
	} else if run != nil {
		out["storyRun"] = run.Name
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
