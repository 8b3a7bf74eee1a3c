// Command producer is a Go SDK streaming engram that publishes INTEROP_COUNT messages (message
// ids m-000001, m-000002, ...) and then stays connected until SIGTERM. Message i is, in turn:
//
//	i%3 == 1: JSON: {"i": i, "text": "<&> é \u2028", "big": 1e21, "half": 0.5}
//	i%3 == 2: a raw binary frame (application/octet-stream) of 64 bytes derived from i
//	i%3 == 0: a 20 ms PCM16 mono 16 kHz audio frame derived from i, timestamp i*20 ms
//
// so a chain carries the three shapes the protocol treats differently. When the SDK
// reconnects (the connector restarted) and calls Stream again, the producer publishes the whole
// sequence again: the connector's publish is idempotent by message id, so nothing is doubled
// and nothing lost in flight is missing.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	sdk "github.com/bubustack/bubu-sdk-go"
	"github.com/bubustack/bubu-sdk-go/engram"
)

type producer struct{ count int }

func (p *producer) Init(context.Context, map[string]any, *engram.Secrets) error { return nil }

// Message builds message i (1-based).
func Message(i int) engram.StreamMessage {
	id := fmt.Sprintf("m-%06d", i)
	meta := map[string]string{"chain.index": strconv.Itoa(i)}
	switch i % 3 {
	case 1:
		payload, _ := json.Marshal(map[string]any{"i": i, "text": "<&> é \u2028", "big": 1e21, "half": 0.5})
		return engram.StreamMessage{Kind: "data", MessageID: id, Metadata: meta, Payload: payload,
			Binary: &engram.BinaryFrame{Payload: payload, MimeType: "application/json"}}
	case 2:
		raw := make([]byte, 64)
		for j := range raw {
			raw[j] = byte(i*7 + j)
		}
		return engram.StreamMessage{MessageID: id, Metadata: meta,
			Binary: &engram.BinaryFrame{Payload: raw, MimeType: "application/octet-stream"}}
	default:
		pcm := make([]byte, 640) // 20 ms of 16 kHz mono PCM16
		for j := 0; j < len(pcm); j += 2 {
			binary.LittleEndian.PutUint16(pcm[j:], uint16(i*31+j))
		}
		return engram.StreamMessage{MessageID: id, Metadata: meta, Audio: &engram.AudioFrame{
			PCM: pcm, SampleRateHz: 16000, Channels: 1, Codec: "pcm16",
			Timestamp: time.Duration(i*20) * time.Millisecond}}
	}
}

func (p *producer) Stream(ctx context.Context, in <-chan engram.InboundMessage, out chan<- engram.StreamMessage) error {
	go func() {
		for msg := range in {
			msg.Done()
		}
	}()
	for i := 1; i <= p.count; i++ {
		select {
		case out <- Message(i):
		case <-ctx.Done():
			return nil
		}
	}
	<-ctx.Done() // returning would end the process, and Go may drop what is still queued
	return nil
}

func main() {
	count, err := strconv.Atoi(os.Getenv("INTEROP_COUNT"))
	if err != nil || count <= 0 {
		fmt.Fprintln(os.Stderr, "producer: INTEROP_COUNT must be a positive integer")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := sdk.StartStreaming[map[string]any](ctx, &producer{count: count}); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		os.Exit(1)
	}
}
