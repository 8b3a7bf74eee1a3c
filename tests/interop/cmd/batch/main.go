// Command batch is a Go SDK batch engram for the twin tests. It runs sdk.StartBatch in the
// environment the operator injects into a StepRun pod (BUBU_STEPRUN_NAME, BUBU_TRIGGER_DATA,
// BUBU_STEP_TIMEOUT, KUBECONFIG, ...) and does what its inputs ask:
//
//	{"mode": "succeed", "output": {...}}          return the output
//	{"mode": "fail", "message": "..."}            return a plain error
//	{"mode": "sleep", "sleep": "30s"}             sleep (until BUBU_STEP_TIMEOUT cancels it)
//	{"mode": "structured", "error": {type, message, retryable?, exitClass?, code?, details?}}
//	                                              return a StructuredError
//	{"mode": "signal", "key": "k", "value": ...}  emit a signal, then return the output
//
// The Python twin engram (tests/interop/_twins.py) does the same, and the tests compare the
// StepRun status both leave behind. The process exits with sdk.BatchExitCode as a pod would.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	runsv1alpha1 "github.com/bubustack/bobrapet/api/runs/v1alpha1"
	"github.com/bubustack/bobrapet/pkg/enums"
	sdk "github.com/bubustack/bubu-sdk-go"
	"github.com/bubustack/bubu-sdk-go/engram"
)

type structured struct {
	Type      string         `json:"type"`
	Message   string         `json:"message"`
	Retryable *bool          `json:"retryable"`
	ExitClass string         `json:"exitClass"`
	Code      string         `json:"code"`
	Details   map[string]any `json:"details"`
}

type inputs struct {
	Mode    string      `json:"mode"`
	Output  any         `json:"output"`
	Message string      `json:"message"`
	Sleep   string      `json:"sleep"`
	Error   *structured `json:"error"`
	Key     string      `json:"key"`
	Value   any         `json:"value"`
}

type twin struct{}

func (twin) Init(context.Context, map[string]any, *engram.Secrets) error { return nil }

func (twin) Process(ctx context.Context, _ *engram.ExecutionContext, in inputs) (*engram.Result, error) {
	switch in.Mode {
	case "succeed":
		return engram.NewResultFrom(in.Output), nil
	case "fail":
		return nil, errors.New(in.Message)
	case "sleep":
		d, err := time.ParseDuration(in.Sleep)
		if err != nil {
			return nil, err
		}
		select {
		case <-time.After(d):
			return engram.NewResultFrom(in.Output), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "structured":
		if in.Error == nil {
			return nil, errors.New("structured mode needs an error")
		}
		var opts []sdk.StructuredErrorOption
		if in.Error.Retryable != nil {
			opts = append(opts, sdk.WithStructuredErrorRetryable(*in.Error.Retryable))
		}
		if in.Error.ExitClass != "" {
			opts = append(opts, sdk.WithStructuredErrorExitClass(enums.ExitClass(in.Error.ExitClass)))
		}
		if in.Error.Code != "" {
			opts = append(opts, sdk.WithStructuredErrorCode(in.Error.Code))
		}
		if in.Error.Details != nil {
			opts = append(opts, sdk.WithStructuredErrorDetails(in.Error.Details))
		}
		return nil, sdk.NewStructuredError(runsv1alpha1.StructuredErrorType(in.Error.Type), in.Error.Message, opts...)
	case "signal":
		if err := sdk.EmitSignal(ctx, in.Key, in.Value); err != nil {
			return nil, err
		}
		return engram.NewResultFrom(in.Output), nil
	default:
		return nil, fmt.Errorf("unknown mode %q", in.Mode)
	}
}

func main() {
	err := sdk.StartBatch[map[string]any, inputs](context.Background(), twin{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "batch:", err)
	}
	os.Exit(sdk.BatchExitCode(err))
}
