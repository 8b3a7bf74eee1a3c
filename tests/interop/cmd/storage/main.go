// Command storage runs the operator's storage package (bobrapet pkg/storage) so tests can
// compare the Python storage layer with it byte for byte, and time it.
//
//	storage vectors < cases.json   one JSON result per case (offload refs, stored bytes, errors)
//	storage dehydrate|hydrate      run one operation on the store the environment names:
//	                               stdin {"data", "id"}, stdout the result as JSON
//	storage bench <n>              ops/s of dehydrate and hydrate+decode on the store the
//	                               BUBU_STORAGE_* environment names (file or s3), as JSON
//
// A vectors case: {"name", "op": "dehydrate"|"dehydrate_inputs"|"hydrate", "data", "id",
// "maxInline", "maxDepth", "schema", "schemaVersion", "files": {path: text}, "provider"}. Each
// case runs against a fresh file store ("provider": "none" disables storage); "files" are
// written into it first (hydrate cases).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bubustack/bobrapet/pkg/storage"
	"github.com/bubustack/bubu-sdk-go/runtime"
)

type vectorCase struct {
	Name          string            `json:"name"`
	Op            string            `json:"op"`
	Data          any               `json:"data"`
	ID            string            `json:"id"`
	MaxInline     *int              `json:"maxInline"`
	MaxDepth      int               `json:"maxDepth"`
	Schema        string            `json:"schema"`
	SchemaVersion string            `json:"schemaVersion"`
	Files         map[string]string `json:"files"`
	Provider      string            `json:"provider"`
}

type vectorResult struct {
	Name   string            `json:"name"`
	Result any               `json:"result"`
	Files  map[string]string `json:"files"`
	Error  string            `json:"error,omitempty"`
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func runCase(c vectorCase) vectorResult {
	out := vectorResult{Name: c.Name, Files: map[string]string{}}
	dir, err := os.MkdirTemp("", "bubu-storage-vec-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	provider := c.Provider
	if provider == "" {
		provider = "file"
	}
	os.Setenv("BUBU_STORAGE_PROVIDER", provider)
	os.Setenv("BUBU_STORAGE_PATH", dir)
	if c.MaxInline != nil {
		os.Setenv("BUBU_MAX_INLINE_SIZE", strconv.Itoa(*c.MaxInline))
	} else {
		os.Unsetenv("BUBU_MAX_INLINE_SIZE")
	}
	if c.MaxDepth > 0 {
		os.Setenv("BUBU_MAX_RECURSION_DEPTH", strconv.Itoa(c.MaxDepth))
	} else {
		os.Unsetenv("BUBU_MAX_RECURSION_DEPTH")
	}
	for path, text := range c.Files {
		full := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o750); err != nil {
			fail(err)
		}
		if err := os.WriteFile(full, []byte(text), 0o600); err != nil {
			fail(err)
		}
	}
	sm, err := storage.NewManager(context.Background())
	if err != nil {
		out.Error = err.Error()
		return out
	}
	ctx := storage.WithStorageSchema(context.Background(), c.Schema, c.SchemaVersion)
	switch c.Op {
	case "dehydrate":
		out.Result, err = sm.Dehydrate(ctx, c.Data, c.ID)
	case "dehydrate_inputs":
		out.Result, err = sm.DehydrateInputs(ctx, c.Data, c.ID)
	case "hydrate":
		out.Result, err = sm.Hydrate(ctx, c.Data)
	default:
		err = fmt.Errorf("unknown op %q", c.Op)
	}
	if err != nil {
		out.Error = err.Error()
		out.Result = nil
	}
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if _, given := c.Files[rel]; given {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out.Files[filepath.ToSlash(rel)] = string(data)
		return nil
	})
	return out
}

func vectors() {
	var input struct {
		Cases []vectorCase `json:"cases"`
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	if err := json.Unmarshal(raw, &input); err != nil {
		fail(err)
	}
	results := make([]vectorResult, 0, len(input.Cases))
	for _, c := range input.Cases {
		results = append(results, runCase(c))
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(map[string]any{"results": results}); err != nil {
		fail(err)
	}
}

// benchInputs is what the benchmark decodes a hydrated input into (as an engram would).
type benchInputs struct {
	Document string           `json:"document"`
	Items    []map[string]any `json:"items"`
}

// benchPayload is a 1 MiB input: one large text field and a list of small records.
func benchPayload() map[string]any {
	items := make([]any, 0, 1000)
	for i := 0; i < 1000; i++ {
		items = append(items, map[string]any{"id": float64(i), "name": "item-" + strconv.Itoa(i), "ok": i%2 == 0})
	}
	return map[string]any{"document": strings.Repeat("lorem ipsum dolor sit amet ", 37000)[:1<<20-60000], "items": items}
}

func bench(n int) {
	ctx := context.Background()
	sm, err := storage.NewManager(ctx)
	if err != nil {
		fail(err)
	}
	payload := benchPayload()
	size, _ := json.Marshal(payload)
	// Dehydrate a 1 MiB output.
	start := time.Now()
	var ref any
	for i := 0; i < n; i++ {
		ref, err = sm.Dehydrate(ctx, payload, "bench/go-steprun")
		if err != nil {
			fail(err)
		}
	}
	dehydrate := float64(n) / time.Since(start).Seconds()
	// Hydrate and decode a 1 MiB offloaded input.
	inputs := map[string]any{"input": ref}
	start = time.Now()
	for i := 0; i < n; i++ {
		hydrated, err := sm.Hydrate(ctx, inputs)
		if err != nil {
			fail(err)
		}
		m := hydrated.(map[string]any)["input"].(map[string]any)
		decoded, err := runtime.UnmarshalFromMap[benchInputs](m)
		if err != nil {
			fail(err)
		}
		if len(decoded.Items) != 1000 {
			fail(fmt.Errorf("decoded %d items", len(decoded.Items)))
		}
	}
	hydrate := float64(n) / time.Since(start).Seconds()
	keys := []string{}
	if m, ok := ref.(map[string]any); ok {
		for k := range m {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
		"payload_bytes":         len(size),
		"dehydrate_ops":         dehydrate,
		"hydrate_decode_ops":    hydrate,
		"ref_keys":              keys,
		"iterations":            n,
		"provider":              os.Getenv("BUBU_STORAGE_PROVIDER"),
		"stored_object_written": !bytes.Equal(size, nil),
	})
}

func envOp(op string) {
	var in struct {
		Data any    `json:"data"`
		ID   string `json:"id"`
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		fail(err)
	}
	ctx := context.Background()
	sm, err := storage.NewManager(ctx)
	if err != nil {
		fail(err)
	}
	var out any
	if op == "dehydrate" {
		out, err = sm.Dehydrate(ctx, in.Data, in.ID)
	} else {
		out, err = sm.Hydrate(ctx, in.Data)
	}
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: storage vectors|bench <n>"))
	}
	switch os.Args[1] {
	case "vectors":
		vectors()
	case "dehydrate", "hydrate":
		envOp(os.Args[1])
	case "bench":
		n := 20
		if len(os.Args) > 2 {
			if v, err := strconv.Atoi(os.Args[2]); err == nil && v > 0 {
				n = v
			}
		}
		bench(n)
	default:
		fail(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
}
