// Command templating runs github.com/bubustack/core/templating (and gojsonschema, the Go SDK's
// schema validator) on a corpus read as JSON lines from stdin, writing one JSON result line per
// case. The Python tests compare bubu's evaluator and validator with these results.
//
// Each input line is an object with "id" and "op":
//
//	"string": ResolveTemplateString(template, vars)
//	"value":  ResolveValue(value, vars)
//	"key":    the dedupe key computation of the Go SDK's TriggerStory (deterministic, 250ms)
//	"schema": gojsonschema.Validate(schema, doc) -> valid, errors
//	"sdk_expression" / "sdk_condition": the Go SDK's public cel.Evaluator on "template"
//	"sdk_resolve": cel.Evaluator.ResolveTemplate(value, vars)
//	"sdk_extract": cel.ExtractExpression(value) -> {"found", "expr", "vars"}
//	"bench_resolve" / "bench_schema": repeat the operation "iterations" times, report ops/s
//
// Options: "deterministic", "maxOutputBytes", "timeoutMs".
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	sdkcel "github.com/bubustack/bubu-sdk-go/cel"
	"github.com/bubustack/core/templating"
	"github.com/xeipuuv/gojsonschema"
)

type request struct {
	ID             string          `json:"id"`
	Op             string          `json:"op"`
	Template       string          `json:"template"`
	Value          json.RawMessage `json:"value"`
	Vars           json.RawMessage `json:"vars"`
	Schema         json.RawMessage `json:"schema"`
	Doc            json.RawMessage `json:"doc"`
	Deterministic  bool            `json:"deterministic"`
	MaxOutputBytes int             `json:"maxOutputBytes"`
	TimeoutMs      int             `json:"timeoutMs"`
	Iterations     int             `json:"iterations"`
}

type response struct {
	ID        string   `json:"id"`
	OK        bool     `json:"ok"`
	Value     any      `json:"value,omitempty"`
	Error     string   `json:"error,omitempty"`
	ErrorKind string   `json:"errorKind,omitempty"`
	Valid     *bool    `json:"valid,omitempty"`
	Errors    []string `json:"errors,omitempty"`
	OpsPerSec float64  `json:"opsPerSec,omitempty"`
}

func decode(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil
	}
	return out
}

func decodeVars(raw json.RawMessage) map[string]any {
	v, _ := decode(raw).(map[string]any)
	return v
}

func errorKind(err error) string {
	var blocked *templating.ErrEvaluationBlocked
	var offloaded *templating.ErrOffloadedDataUsage
	switch {
	case errors.As(err, &blocked):
		return "blocked"
	case errors.As(err, &offloaded):
		return "offloaded"
	}
	return ""
}

func evaluator(req request) (*templating.Evaluator, error) {
	return templating.New(templating.Config{
		Deterministic:     req.Deterministic,
		MaxOutputBytes:    req.MaxOutputBytes,
		EvaluationTimeout: time.Duration(req.TimeoutMs) * time.Millisecond,
	})
}

// answer puts a result in resp, or says that it has no JSON form.
func answer(resp response, out any) response {
	if _, err := json.Marshal(out); err != nil {
		resp.Error = "result not JSON: " + err.Error()
		resp.ErrorKind = "unencodable"
		return resp
	}
	resp.OK = true
	resp.Value = out
	return resp
}

func run(req request) (resp response) {
	resp.ID = req.ID
	defer func() {
		if r := recover(); r != nil {
			resp.OK = false
			resp.Error = fmt.Sprintf("panic: %v", r)
			resp.ErrorKind = "panic"
		}
	}()
	ctx := context.Background()
	switch req.Op {
	case "string", "value", "key":
		if req.Op == "key" {
			req.Deterministic = true
			req.TimeoutMs = 250
		}
		eval, err := evaluator(req)
		if err != nil {
			resp.Error = err.Error()
			return resp
		}
		defer eval.Close()
		var out any
		if req.Op == "value" {
			out, err = eval.ResolveValue(ctx, decode(req.Value), decodeVars(req.Vars))
		} else {
			out, err = eval.ResolveTemplateString(ctx, req.Template, decodeVars(req.Vars))
		}
		if err != nil {
			resp.Error = err.Error()
			resp.ErrorKind = errorKind(err)
			return resp
		}
		if req.Op == "key" {
			key := ""
			switch v := out.(type) {
			case string:
				key = v
			default:
				encoded, err := json.Marshal(v)
				if err != nil {
					resp.Error = "marshal trigger key: " + err.Error()
					return resp
				}
				key = string(encoded)
			}
			key = strings.TrimSpace(key)
			if key == "" {
				resp.Error = "trigger key resolved to empty value"
				return resp
			}
			sum := sha256.Sum256([]byte(key))
			out = hex.EncodeToString(sum[:])
		}
		return answer(resp, out)
	case "sdk_expression", "sdk_condition", "sdk_resolve":
		eval, err := sdkcel.NewEvaluator(nil, sdkcel.Config{
			Deterministic:     req.Deterministic,
			MaxOutputBytes:    req.MaxOutputBytes,
			EvaluationTimeout: time.Duration(req.TimeoutMs) * time.Millisecond,
		})
		if err != nil {
			resp.Error = err.Error()
			return resp
		}
		defer eval.Close()
		var out any
		switch req.Op {
		case "sdk_expression":
			out, err = eval.EvaluateExpression(ctx, req.Template, decodeVars(req.Vars))
		case "sdk_condition":
			out, err = eval.EvaluateCondition(ctx, req.Template, decodeVars(req.Vars))
		default:
			out, err = eval.ResolveTemplate(ctx, decode(req.Value), decodeVars(req.Vars))
		}
		if err != nil {
			resp.Error = err.Error()
			resp.ErrorKind = errorKind(err)
			return resp
		}
		return answer(resp, out)
	case "sdk_extract":
		expr, found := sdkcel.ExtractExpression(decode(req.Value))
		resp.OK = true
		resp.Value = map[string]any{"found": found, "expr": expr.Expr, "vars": expr.Vars}
	case "schema":
		result, err := gojsonschema.Validate(
			gojsonschema.NewBytesLoader(req.Schema), gojsonschema.NewBytesLoader(req.Doc))
		if err != nil {
			resp.Error = err.Error()
			return resp
		}
		valid := result.Valid()
		resp.OK = true
		resp.Valid = &valid
		for _, e := range result.Errors() {
			resp.Errors = append(resp.Errors, e.String())
		}
	case "bench_resolve":
		eval, err := evaluator(req)
		if err != nil {
			resp.Error = err.Error()
			return resp
		}
		defer eval.Close()
		value, vars := decode(req.Value), decodeVars(req.Vars)
		start := time.Now()
		for i := 0; i < req.Iterations; i++ {
			if _, err := eval.ResolveValue(ctx, value, vars); err != nil {
				resp.Error = err.Error()
				return resp
			}
		}
		resp.OK = true
		resp.OpsPerSec = float64(req.Iterations) / time.Since(start).Seconds()
	case "bench_schema", "bench_schema_compiled":
		schemaLoader := gojsonschema.NewBytesLoader(req.Schema)
		compiled, err := gojsonschema.NewSchema(schemaLoader)
		if err != nil {
			resp.Error = err.Error()
			return resp
		}
		start := time.Now()
		for i := 0; i < req.Iterations; i++ {
			// The Go SDK validates with gojsonschema.Validate, compiling the schema each time;
			// "bench_schema_compiled" measures the validator alone.
			var result *gojsonschema.Result
			if req.Op == "bench_schema" {
				result, err = gojsonschema.Validate(schemaLoader, gojsonschema.NewBytesLoader(req.Doc))
			} else {
				result, err = compiled.Validate(gojsonschema.NewBytesLoader(req.Doc))
			}
			if err != nil || !result.Valid() {
				resp.Error = fmt.Sprintf("unexpected: %v", err)
				return resp
			}
		}
		resp.OK = true
		resp.OpsPerSec = float64(req.Iterations) / time.Since(start).Seconds()
	default:
		resp.Error = "unknown op " + req.Op
	}
	return resp
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			_ = enc.Encode(response{Error: "bad request: " + err.Error()})
			_ = out.Flush()
			continue
		}
		_ = enc.Encode(run(req))
		_ = out.Flush()
	}
}
