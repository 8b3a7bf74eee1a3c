// Command vectors answers questions about Go-visible values by running the Go code that produces
// them: the operator's identity package (names, hashes), the Go SDK (label and DNS names, the
// StepRun status merge through PatchStepRunStatus, the weakly typed decode of config and inputs
// through UnmarshalFromMap, the google.protobuf.Struct it builds and renders), tractatus's
// packet envelope, core's template evaluator (trigger keys), encoding/json, fmt, strconv,
// strings and time.
//
// Protocol: one JSON request per line on stdin, {"op": "<name>", "args": [...]}; one JSON reply
// per line on stdout, {"ok": <value>} or {"err": "<Go error text>"}. Floats travel as their IEEE
// 754 bits (a decimal string of the uint64) so no JSON parser rounds them on the way.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	sdkruntime "github.com/bubustack/bubu-sdk-go/runtime"
	"github.com/bubustack/tractatus/envelope"
	transportpb "github.com/bubustack/tractatus/gen/go/proto/transport/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	runsv1alpha1 "github.com/bubustack/bobrapet/api/runs/v1alpha1"
	"github.com/bubustack/bobrapet/pkg/runs/identity"
	"github.com/bubustack/bubu-sdk-go/k8s"
	coreidentity "github.com/bubustack/core/runtime/identity"
	"github.com/bubustack/core/templating"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

type request struct {
	Op   string            `json:"op"`
	Args []json.RawMessage `json:"args"`
}

func str(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		panic(fmt.Sprintf("argument %s is not a string: %v", raw, err))
	}
	return s
}

func bits(raw json.RawMessage) float64 {
	u, err := strconv.ParseUint(str(raw), 10, 64)
	if err != nil {
		panic(err)
	}
	return math.Float64frombits(u)
}

// memClient is the smallest API the Go SDK's PatchStepRunStatus needs (Get, then a merge patch
// on the status subresource), over one StepRun held as JSON. The patch bytes are the ones the SDK
// would send; they are applied with RFC 7386 as the API server does.
type memClient struct {
	client.Client // nil: any other call panics, which the reply reports
	stored        []byte
}

func (m *memClient) Get(_ context.Context, _ client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	return json.Unmarshal(m.stored, obj)
}

func (m *memClient) Status() client.SubResourceWriter { return &memStatus{m: m} }

type memStatus struct {
	client.SubResourceWriter
	m *memClient
}

func (s *memStatus) Patch(_ context.Context, obj client.Object, patch client.Patch, _ ...client.SubResourcePatchOption) error {
	data, err := patch.Data(obj)
	if err != nil {
		return err
	}
	merged, err := jsonpatch.MergePatch(s.m.stored, data)
	if err != nil {
		return err
	}
	s.m.stored = merged
	return nil
}

// mergeStatus runs the Go SDK's PatchStepRunStatus on a StepRun whose status is existing and
// returns the status stored afterwards.
func mergeStatus(existing, update json.RawMessage, podName string) (any, error) {
	var before, patch runsv1alpha1.StepRunStatus
	if err := json.Unmarshal(existing, &before); err != nil {
		return nil, fmt.Errorf("existing status: %w", err)
	}
	if err := json.Unmarshal(update, &patch); err != nil {
		return nil, fmt.Errorf("update status: %w", err)
	}
	stored, err := json.Marshal(&runsv1alpha1.StepRun{ObjectMeta: metav1.ObjectMeta{Name: "sr"}, Status: before})
	if err != nil {
		return nil, err
	}
	if podName != "" {
		_ = os.Setenv("BUBU_POD_NAME", podName)
	} else {
		_ = os.Unsetenv("BUBU_POD_NAME")
	}
	_ = os.Setenv("BUBU_K8S_PATCH_MAX_RETRIES", "0")
	mem := &memClient{stored: stored}
	c := &k8s.Client{Client: mem}
	if err := c.PatchStepRunStatus(context.Background(), "sr", patch); err != nil {
		return nil, err
	}
	var got runsv1alpha1.StepRun
	if err := json.Unmarshal(mem.stored, &got); err != nil {
		return nil, err
	}
	var out any
	raw, err := json.Marshal(got.Status)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// triggerKey resolves a dedupe key template the way the Go SDK does (core's deterministic
// evaluator over {inputs, story, impulse}; a non-string result is JSON-encoded; trimmed; sha256).
func triggerKey(template string, inputsRaw json.RawMessage, storyName, storyNS, impulseName, impulseNS string) (any, error) {
	var inputs map[string]any
	if err := json.Unmarshal(inputsRaw, &inputs); err != nil {
		return nil, err
	}
	eval, err := templating.New(templating.Config{Deterministic: true, EvaluationTimeout: 250 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	defer eval.Close()
	vars := map[string]any{
		"inputs":  inputs,
		"story":   map[string]any{"name": storyName, "namespace": storyNS},
		"impulse": map[string]any{"name": impulseName, "namespace": impulseNS},
	}
	resolved, err := eval.ResolveTemplateString(context.Background(), template, vars)
	if err != nil {
		return nil, err
	}
	text, ok := resolved.(string)
	if !ok {
		encoded, err := json.Marshal(resolved)
		if err != nil {
			return nil, err
		}
		text = string(encoded)
	}
	return map[string]any{"rendered": text, "key": strings.TrimSpace(text)}, nil
}

// weakItem is one element of the object-shaped weak-decode targets.
type weakItem struct {
	Qty  int    `mapstructure:"qty" json:"qty"`
	Name string `mapstructure:"name" json:"name"`
}

// weakObject exercises key matching, nesting, slices and maps in the weak decode.
type weakObject struct {
	MaxRetries int                 `mapstructure:"maxRetries" json:"maxRetries"`
	Name       string              `mapstructure:"name" json:"name"`
	Timeout    time.Duration       `mapstructure:"timeout" json:"timeout"`
	Inner      weakItem            `mapstructure:"inner" json:"inner"`
	Items      []weakItem          `mapstructure:"items" json:"items"`
	Tags       map[string]string   `mapstructure:"tags" json:"tags"`
	Counts     map[string]int      `mapstructure:"counts" json:"counts"`
	Flags      []bool              `mapstructure:"flags" json:"flags"`
	ByName     map[string]weakItem `mapstructure:"byName" json:"byName"`
	Opt        *weakItem           `mapstructure:"opt" json:"opt"`
}

type weakBox[T any] struct {
	V T `mapstructure:"v"`
}

func weakScalar[T any](data map[string]any) (T, error) {
	box, err := sdkruntime.UnmarshalFromMap[weakBox[T]](data)
	return box.V, err
}

// weakDecode runs the Go SDK's UnmarshalFromMap (mapstructure, WeaklyTypedInput) on a JSON
// document decoded as the SDK decodes config and inputs (numbers as float64). Scalar targets
// decode {"v": value}; "object" decodes into weakObject. Integers and durations come back as
// decimal strings, floats as their IEEE 754 bits, so no JSON number rounds them.
func weakDecode(target string, raw string, strict bool) (any, error) {
	var data map[string]any
	if err := json.Unmarshal([]byte(raw), &data); err != nil {
		return nil, err
	}
	if strict {
		_ = os.Setenv("BUBU_RUNTIME_STRICT_UNMARSHAL", "true")
	} else {
		_ = os.Unsetenv("BUBU_RUNTIME_STRICT_UNMARSHAL")
	}
	switch target {
	case "int":
		v, err := weakScalar[int](data)
		return strconv.FormatInt(int64(v), 10), err
	case "float":
		v, err := weakScalar[float64](data)
		return strconv.FormatUint(math.Float64bits(v), 10), err
	case "string":
		return weakScalar[string](data)
	case "bool":
		return weakScalar[bool](data)
	case "duration":
		v, err := weakScalar[time.Duration](data)
		return strconv.FormatInt(int64(v), 10), err
	case "ints":
		v, err := weakScalar[[]int](data)
		out := make([]string, len(v))
		for i, n := range v {
			out[i] = strconv.FormatInt(int64(n), 10)
		}
		return out, err
	case "strings":
		return weakScalar[[]string](data)
	case "string_map":
		return weakScalar[map[string]string](data)
	case "object":
		v, err := sdkruntime.UnmarshalFromMap[weakObject](data)
		if err != nil {
			return nil, err
		}
		encoded, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		var out any
		err = json.Unmarshal(encoded, &out)
		return out, err
	}
	return nil, errors.New("unknown weak-decode target " + strconv.Quote(target))
}

// envelopeSpec is an envelope as the Go SDK fills it from a StreamMessage; payload and inputs
// travel as text so their bytes reach envelope.Marshal unchanged.
type envelopeSpec struct {
	Kind        string                         `json:"kind"`
	MessageID   string                         `json:"messageId"`
	TimestampMs int64                          `json:"timestampMs"`
	Metadata    map[string]string              `json:"metadata"`
	Payload     string                         `json:"payload"`
	Inputs      string                         `json:"inputs"`
	Transports  []envelope.TransportDescriptor `json:"transports"`
}

func envelopeMarshal(raw string) (any, error) {
	var spec envelopeSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		return nil, err
	}
	env := &envelope.Envelope{
		Version:     envelope.LatestVersion,
		Kind:        spec.Kind,
		MessageID:   spec.MessageID,
		TimestampMs: spec.TimestampMs,
		Metadata:    spec.Metadata,
		Transports:  spec.Transports,
	}
	if spec.Payload != "" {
		env.Payload = json.RawMessage(spec.Payload)
	}
	if spec.Inputs != "" {
		env.Inputs = json.RawMessage(spec.Inputs)
	}
	frame, err := envelope.ToBinaryFrame(env)
	if err != nil {
		return nil, err
	}
	return map[string]any{"json": string(frame.GetPayload()), "timestampMs": strconv.FormatUint(frame.GetTimestampMs(), 10)}, nil
}

// envelopeFromFrame decodes an envelope frame with tractatus FromBinaryFrame, as the Go SDK does
// for a received packet; payload and inputs come back as their exact bytes.
func envelopeFromFrame(payload string, frameTimestamp string) (any, error) {
	ts, err := strconv.ParseUint(frameTimestamp, 10, 64)
	if err != nil {
		return nil, err
	}
	env, err := envelope.FromBinaryFrame(&transportpb.BinaryFrame{Payload: []byte(payload), MimeType: envelope.MIMEType, TimestampMs: ts})
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"kind": env.Kind, "messageId": env.MessageID, "timestampMs": strconv.FormatInt(env.TimestampMs, 10),
		"metadata": env.Metadata, "payload": string(env.Payload), "inputs": string(env.Inputs),
		"transports": env.Transports,
	}, nil
}

// structOf builds the Struct the Go SDK sends for a JSON object (json.Unmarshal, NewStruct) and
// returns its deterministic wire bytes (map entries sorted by key) as hex.
func structOf(raw string) (any, error) {
	var payload map[string]any
	if err := json.Unmarshal([]byte(raw), &payload); err != nil {
		return nil, err
	}
	st, err := structpb.NewStruct(payload)
	if err != nil {
		return nil, err
	}
	out, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	return hex.EncodeToString(out), err
}

// structJSON parses Struct wire bytes (hex) and renders them as the Go SDK hands a received
// Struct to the engram (Struct.MarshalJSON, protojson), compacted: protojson varies its spaces.
func structJSON(hexBytes string) (any, error) {
	data, err := hex.DecodeString(hexBytes)
	if err != nil {
		return nil, err
	}
	var st structpb.Struct
	if err := proto.Unmarshal(data, &st); err != nil {
		return nil, err
	}
	out, err := st.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, out); err != nil {
		return nil, err
	}
	return compact.String(), nil
}

func typed(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, item := range x {
			x[k] = typed(item)
		}
	case []any:
		for i, item := range x {
			x[i] = typed(item)
		}
	}
	return v
}

func answer(req request) (result any, err error) {
	a := req.Args
	switch req.Op {
	case "trigger_name":
		return identity.DeriveStoryTriggerName(str(a[0]), str(a[1]), str(a[2]), str(a[3])), nil
	case "run_name":
		return identity.DeriveStoryRunName(str(a[0]), str(a[1]), str(a[2])), nil
	case "claim_name":
		return identity.DeriveEffectClaimName(str(a[0]), str(a[1]), str(a[2])), nil
	case "idempotency_key":
		return identity.StepRunIdempotencyKey(str(a[0]), str(a[1]), str(a[2])), nil
	case "input_hash":
		return identity.ComputeTriggerInputHash([]byte(str(a[0])))
	case "canonical_json":
		// json.Marshal(json.Unmarshal(raw)): what the input hash is taken over.
		var v any
		if err := json.Unmarshal([]byte(str(a[0])), &v); err != nil {
			return nil, err
		}
		out, err := json.Marshal(v)
		return string(out), err
	case "marshal_number_literals":
		// json.Marshal of a value decoded with UseNumber: keys sorted, HTML-safe escapes,
		// numbers exactly as written (what a Go caller's ints and strings marshal to).
		dec := json.NewDecoder(strings.NewReader(str(a[0])))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out, err := json.Marshal(v)
		return string(out), err
	case "marshal_typed":
		// json.Marshal of the value a Go caller would hold: integers as int64, other numbers
		// as float64 (keys sorted, HTML-safe escapes): the bytes signal summaries hash.
		dec := json.NewDecoder(strings.NewReader(str(a[0])))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out, err := json.Marshal(typed(v))
		return string(out), err
	case "marshal_raw":
		// json.Marshal of a json.RawMessage: compacted and HTML-escaped, order kept (how a Go
		// struct's fields come out when the text lists them in declaration order).
		out, err := json.Marshal(json.RawMessage(str(a[0])))
		return string(out), err
	case "safe_label":
		return coreidentity.SafeLabelValue(str(a[0])), nil
	case "dns1123":
		parts := make([]string, len(a))
		for i := range a {
			parts[i] = str(a[i])
		}
		return k8s.ComposeDNS1123Name(parts...), nil
	case "json_float":
		out, err := json.Marshal(bits(a[0]))
		return string(out), err
	case "sprint_float":
		return fmt.Sprint(bits(a[0])), nil
	case "parse_duration":
		d, err := time.ParseDuration(str(a[0]))
		if err != nil {
			return nil, err
		}
		return strconv.FormatInt(int64(d), 10), nil
	case "duration_string":
		ns, err := strconv.ParseInt(str(a[0]), 10, 64)
		if err != nil {
			return nil, err
		}
		return time.Duration(ns).String(), nil
	case "atoi":
		n, err := strconv.Atoi(str(a[0]))
		if err != nil {
			return nil, err
		}
		return strconv.Itoa(n), nil
	case "parse_bool":
		return strconv.ParseBool(str(a[0]))
	case "trim_space":
		return strings.TrimSpace(str(a[0])), nil
	case "merge_status":
		return mergeStatus(a[0], a[1], str(a[2]))
	case "trigger_key":
		return triggerKey(str(a[0]), a[1], str(a[2]), str(a[3]), str(a[4]), str(a[5]))
	case "envelope_marshal":
		return envelopeMarshal(str(a[0]))
	case "envelope_from_frame":
		return envelopeFromFrame(str(a[0]), str(a[1]))
	case "struct_of":
		return structOf(str(a[0]))
	case "struct_json":
		return structJSON(str(a[0]))
	case "weak_decode":
		var strict bool
		if len(a) > 2 {
			strict = str(a[2]) == "strict"
		}
		return weakDecode(str(a[0]), str(a[1]), strict)
	}
	return nil, errors.New("unknown op " + strconv.Quote(req.Op))
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		rep := map[string]any{}
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			rep["err"] = "bad request: " + err.Error()
		} else {
			func() {
				defer func() {
					if r := recover(); r != nil {
						rep["err"] = fmt.Sprint("panic: ", r)
					}
				}()
				result, err := answer(req)
				if err != nil {
					rep["err"] = err.Error()
				} else {
					rep["ok"] = result
				}
			}()
		}
		if err := out.Encode(rep); err != nil {
			os.Exit(1)
		}
	}
}
