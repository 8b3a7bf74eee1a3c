// Command twin runs Go SDK helper calls (triggers, StopStory, signals, effects, the story
// dispatcher, the REST config) for the twin tests: the Python SDK does the same calls in the
// same environment and the tests compare what lands in the cluster.
//
// Usage: twin '<JSON array of operations>'. Each operation is an object with "op" and its
// arguments; the program runs them in order, in one process (so per-process state such as Go's
// signal sequence counter behaves as in a real pod), and prints one JSON array with a result
// per operation: {"op", "ok", "error", "value"}. The environment (KUBECONFIG, BUBU_*) is the
// one the operator would inject; the program adds nothing to it.
//
// JSON values in the operations are decoded the way Python's json.loads types them (integers
// stay int64, numbers with a fraction or exponent become float64), so the Go side and the
// Python side hand their SDK the same values. Trigger inputs are the exception: they are decoded
// as a Go impulse decodes the JSON body it received (json.Unmarshal, every number a float64),
// which is what the key template and spec.inputs of a Go impulse see.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	sdk "github.com/bubustack/bubu-sdk-go"
	"github.com/bubustack/bubu-sdk-go/k8s"
)

type operation struct {
	Op        string          `json:"op"`
	Story     string          `json:"story"`
	Namespace string          `json:"namespace"`
	Token     string          `json:"token"`
	Inputs    json.RawMessage `json:"inputs"`
	StoryRun  string          `json:"storyRun"`
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	Seq       uint64          `json:"seq"`
	Text      string          `json:"text"`
	Options   textOptions     `json:"options"`
	Since     uint64          `json:"since"`
	StepRun   string          `json:"stepRun"`
	Status    string          `json:"status"`
	Details   json.RawMessage `json:"details"`
	Result    json.RawMessage `json:"result"`
	Fail      string          `json:"fail"`
	Requests  []dispatchReq   `json:"requests"`
}

type textOptions struct {
	Format       string            `json:"format"`
	ContentType  string            `json:"contentType"`
	SampleBytes  int               `json:"sampleBytes"`
	IncludeHash  bool              `json:"includeHash"`
	Attributes   map[string]string `json:"attributes"`
	SampleExtras json.RawMessage   `json:"sampleExtras"`
}

type dispatchReq struct {
	Key          string          `json:"key"`
	TriggerToken string          `json:"triggerToken"`
	StoryName    string          `json:"storyName"`
	Inputs       json.RawMessage `json:"inputs"`
}

type result struct {
	Op    string `json:"op"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	Value any    `json:"value,omitempty"`
}

// decode types JSON like Python's json.loads: int64 for integer literals, float64 otherwise.
func decode(raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return convert(v), nil
}

func convert(v any) any {
	switch t := v.(type) {
	case json.Number:
		s := t.String()
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i
			}
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				return u
			}
		}
		f, _ := strconv.ParseFloat(s, 64)
		return f
	case map[string]any:
		for k, item := range t {
			t[k] = convert(item)
		}
		return t
	case []any:
		for i, item := range t {
			t[i] = convert(item)
		}
		return t
	default:
		return v
	}
}

// impulseInputs decodes trigger inputs as a Go impulse decodes a JSON body.
func impulseInputs(raw json.RawMessage) (map[string]any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func decodeMap(raw json.RawMessage) (map[string]any, error) {
	v, err := decode(raw)
	if err != nil || v == nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("expected a JSON object, got %T", v)
	}
	return m, nil
}

func run(ctx context.Context, op operation) (any, error) {
	switch op.Op {
	case "start_story":
		inputs, err := impulseInputs(op.Inputs)
		if err != nil {
			return nil, err
		}
		var run any
		if op.Token != "" {
			sr, err := sdk.StartStoryWithTokenInNamespace(ctx, op.Story, op.Namespace, op.Token, inputs)
			if err != nil {
				return nil, err
			}
			run = sr.Name
		} else {
			sr, err := sdk.StartStoryInNamespace(ctx, op.Story, op.Namespace, inputs)
			if err != nil {
				return nil, err
			}
			run = sr.Name
		}
		return run, nil
	case "stop_story":
		return nil, sdk.StopStoryInNamespace(ctx, op.StoryRun, op.Namespace)
	case "emit_signal":
		value, err := decode(op.Value)
		if err != nil {
			return nil, err
		}
		if op.Seq > 0 {
			return nil, sdk.EmitSequencedSignal(ctx, op.Key, op.Seq, value)
		}
		return nil, sdk.EmitSignal(ctx, op.Key, value)
	case "emit_text_signal":
		extras, err := decodeMap(op.Options.SampleExtras)
		if err != nil {
			return nil, err
		}
		return nil, sdk.EmitTextSignal(ctx, op.Key, op.Text, sdk.TextSignalOptions{
			Format:       op.Options.Format,
			ContentType:  op.Options.ContentType,
			SampleBytes:  op.Options.SampleBytes,
			IncludeHash:  op.Options.IncludeHash,
			Attributes:   op.Options.Attributes,
			SampleExtras: extras,
		})
	case "replay_signals":
		events, err := sdk.ReplaySignals(ctx, op.StepRun, op.Namespace, op.Since)
		if err != nil {
			return nil, err
		}
		out := make([]map[string]any, 0, len(events))
		for _, e := range events {
			item := map[string]any{"seq": e.Seq, "key": e.Key}
			if e.Payload != nil {
				var payload any
				if err := json.Unmarshal(e.Payload.Raw, &payload); err != nil {
					return nil, err
				}
				item["payload"] = payload
			}
			out = append(out, item)
		}
		return out, nil
	case "record_effect":
		details, err := decode(op.Details)
		if err != nil {
			return nil, err
		}
		return nil, sdk.RecordEffect(ctx, op.Key, op.Status, details)
	case "has_effect":
		return sdk.HasEffect(ctx, op.Key)
	case "execute_effect_once":
		want, err := decode(op.Result)
		if err != nil {
			return nil, err
		}
		calls := 0
		got, already, err := sdk.ExecuteEffectOnce(ctx, op.Key, func(context.Context) (any, error) {
			calls++
			if op.Fail != "" {
				return nil, errors.New(op.Fail)
			}
			return want, nil
		})
		out := map[string]any{"already": already, "calls": calls, "result": got}
		if err != nil {
			out["error"] = err.Error()
			out["alreadyRecorded"] = errors.Is(err, sdk.ErrEffectAlreadyRecorded)
		}
		return out, nil
	case "dispatch":
		d := sdk.NewStoryDispatcher()
		out := make([]map[string]any, 0, len(op.Requests))
		for _, r := range op.Requests {
			inputs, err := impulseInputs(r.Inputs)
			if err != nil {
				return nil, err
			}
			res, err := d.Trigger(ctx, sdk.StoryTriggerRequest{
				Key:          r.Key,
				TriggerToken: r.TriggerToken,
				StoryName:    r.StoryName,
				Inputs:       inputs,
			})
			item := map[string]any{}
			if err != nil {
				item["error"] = err.Error()
			} else {
				item["storyRun"] = res.StoryRun.Name
			}
			out = append(out, item)
		}
		return out, nil
	case "rest_config":
		cfg, err := k8s.GetConfig()
		if err != nil {
			return nil, err
		}
		return map[string]any{
			"timeoutNs": cfg.Timeout.Nanoseconds(),
			"userAgent": cfg.UserAgent,
			"qps":       cfg.QPS,
			"burst":     cfg.Burst,
		}, nil
	case "marshal":
		value, err := decode(op.Value)
		if err != nil {
			return nil, err
		}
		raw, err := json.Marshal(value)
		return string(raw), err
	case "marshal_envelope":
		var parts struct {
			Meta   sdk.SignalMeta  `json:"meta"`
			Sample json.RawMessage `json:"sample"`
		}
		if err := json.Unmarshal(op.Value, &parts); err != nil {
			return nil, err
		}
		sample, err := decode(parts.Sample)
		if err != nil {
			return nil, err
		}
		raw, err := json.Marshal(sdk.SignalEnvelope{Meta: parts.Meta, Sample: sample})
		return string(raw), err
	case "trim_space":
		return strings.TrimSpace(op.Text), nil
	default:
		return nil, fmt.Errorf("unknown op %q", op.Op)
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: twin '<JSON array of operations>'")
		os.Exit(2)
	}
	var ops []operation
	if err := json.Unmarshal([]byte(os.Args[1]), &ops); err != nil {
		fmt.Fprintln(os.Stderr, "twin: bad operations:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	results := make([]result, 0, len(ops))
	for _, op := range ops {
		value, err := run(ctx, op)
		r := result{Op: op.Op, OK: err == nil, Value: value}
		if err != nil {
			r.Error = err.Error()
		}
		results = append(results, r)
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(results); err != nil {
		os.Exit(1)
	}
}
