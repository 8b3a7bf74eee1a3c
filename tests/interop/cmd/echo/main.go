// Command echo is a Go SDK streaming engram (sdk.StartStreaming) that sends every inbound
// message back unchanged (kind, message id, metadata, payload, frames, inputs), then marks it
// done. It dials the connector named in BUBU_TRANSPORT_BINDING like any engram, so it runs
// against bubu's LocalConnector, the Go connector of this module, or a benchmark's connector.
//
// Environment (besides the SDK's own):
//
//	INTEROP_RECORD=path   append one JSON line per inbound message (see record below)
//	INTEROP_SILENT=1      do not send anything back (a sink)
//	INTEROP_HOLD=1        never call Done (no receipts: shows what the connector replays)
//
// The process exits with 0 when StartStreaming returns nil (the connector ended the session
// cleanly or SIGTERM), 1 otherwise.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	sdk "github.com/bubustack/bubu-sdk-go"
	"github.com/bubustack/bubu-sdk-go/engram"
)

type frame struct {
	Mime       string `json:"mime,omitempty"`
	Payload    []byte `json:"payload,omitempty"`
	Timestamp  int64  `json:"timestampMs"`
	SampleRate int32  `json:"sampleRateHz,omitempty"`
	Channels   int32  `json:"channels,omitempty"`
	Codec      string `json:"codec,omitempty"`
}

// record is what a test reads back: everything the SDK handed the engram.
type record struct {
	Kind      string            `json:"kind"`
	MessageID string            `json:"messageId"`
	Timestamp int64             `json:"timestampMs"`
	Metadata  map[string]string `json:"metadata"`
	Payload   []byte            `json:"payload"`
	Inputs    []byte            `json:"inputs"`
	Binary    *frame            `json:"binary,omitempty"`
	Audio     *frame            `json:"audio,omitempty"`
	StreamID  string            `json:"streamId,omitempty"`
	Sequence  uint64            `json:"sequence,omitempty"`
}

type echo struct {
	silent, hold bool
	mu           sync.Mutex
	rec          *bufio.Writer
	file         *os.File
}

func (e *echo) Init(context.Context, map[string]any, *engram.Secrets) error { return nil }

func (e *echo) write(msg engram.StreamMessage) {
	if e.rec == nil {
		return
	}
	r := record{Kind: msg.Kind, MessageID: msg.MessageID, Metadata: msg.Metadata,
		Payload: msg.Payload, Inputs: msg.Inputs}
	if !msg.Timestamp.IsZero() {
		r.Timestamp = msg.Timestamp.UnixMilli()
	}
	if b := msg.Binary; b != nil {
		r.Binary = &frame{Mime: b.MimeType, Payload: b.Payload, Timestamp: b.Timestamp.Milliseconds()}
	}
	if a := msg.Audio; a != nil {
		r.Audio = &frame{Payload: a.PCM, Timestamp: a.Timestamp.Milliseconds(),
			SampleRate: a.SampleRateHz, Channels: a.Channels, Codec: a.Codec}
	}
	if msg.Envelope != nil {
		r.StreamID, r.Sequence = msg.Envelope.StreamId, msg.Envelope.Sequence
	}
	raw, _ := json.Marshal(r)
	e.mu.Lock()
	_, _ = e.rec.Write(raw)
	_ = e.rec.WriteByte('\n')
	_ = e.rec.Flush()
	e.mu.Unlock()
}

func (e *echo) Stream(ctx context.Context, in <-chan engram.InboundMessage, out chan<- engram.StreamMessage) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-in:
			if !ok {
				return nil
			}
			e.write(msg.StreamMessage)
			if !e.silent {
				reply := msg.StreamMessage
				reply.Envelope = nil // the hub assigns the next hop's sequence
				select {
				case out <- reply:
				case <-ctx.Done():
					return nil
				}
			}
			if !e.hold {
				msg.Done()
			}
		}
	}
}

func main() {
	e := &echo{silent: os.Getenv("INTEROP_SILENT") == "1", hold: os.Getenv("INTEROP_HOLD") == "1"}
	if path := os.Getenv("INTEROP_RECORD"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, "echo:", err)
			os.Exit(2)
		}
		e.file, e.rec = f, bufio.NewWriter(f)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := sdk.StartStreaming[map[string]any](ctx, e)
	if e.file != nil {
		_ = e.file.Close()
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}
