// Command connector is a transport connector sidecar (and the hub behind it) written on
// tractatus's Go code: it serves transport.v1.TransportConnectorService to engrams, Go or
// Python, and behaves as docs/ of this repository and the streaming spec describe the real one
// (bobravoz-grpc, which is not published): the protocol header check (FAILED_PRECONDITION),
// connector.ready with startup.capabilities, the capabilities snapshot, handoff.cutover,
// heartbeat ACKs, downstream.delivered receipts, hub metadata on delivered packets, at-least-once
// delivery with replay of unacknowledged packets on a new Data stream, and a graceful stop
// (GracefulStop, hard stop after --grace).
//
// One process serves one or more steps, each on its own listener (--step name=host:port), and
// plays the hub between them: a packet an engram publishes on step A is delivered to step B
// when --route A=B is given. Each step's delivery queue is sequenced per stream (envelope
// stream_id "<ns>/<run>/<step>", sequence from 1) and a packet stays queued until the engram's
// receipt for it arrives.
//
// Tests drive it through stdin (one JSON command per line) and read what happened on stdout
// (one JSON event per line); see tests/interop/README.md for both vocabularies.
//
// With --state DIR the hub keeps its queues in a write-ahead log, so a connector killed with
// SIGKILL and started again on the same ports resumes: publishes are idempotent by message id
// (the bubu.envelope.message_id metadata), unacknowledged packets are delivered again, and for a
// step that has a downstream route a receipt only counts once the step's output with the same
// message id is stored (the protocol has no acknowledgement from connector to engram, so this
// is what closes the window in which a kill would lose an output). After a restart such a step
// gets its unacknowledged inputs under a new stream id, so its SDK runs them again instead of
// suppressing them as done; its outputs are deduplicated by message id.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	coretransport "github.com/bubustack/core/runtime/transport"
	transportpb "github.com/bubustack/tractatus/gen/go/proto/transport/v1"
	"github.com/bubustack/tractatus/validation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

const (
	messageIDKey = "bubu.envelope.message_id"
	heartbeatKey = "bubu-heartbeat"
	bindingKey   = "bubu.transport.binding"
)

// ---- events (stdout) --------------------------------------------------------------------------

var benchProfile string

var (
	outMu sync.Mutex
	out   = bufio.NewWriterSize(os.Stdout, 1<<16)
	quiet bool
)

func emit(ev map[string]any) {
	raw, err := json.Marshal(ev)
	if err != nil {
		raw = []byte(fmt.Sprintf(`{"ev":"error","error":%q}`, err.Error()))
	}
	outMu.Lock()
	_, _ = out.Write(raw)
	_ = out.WriteByte('\n')
	_ = out.Flush()
	outMu.Unlock()
}

// ---- write-ahead log --------------------------------------------------------------------------

type walRecord struct {
	T   string `json:"t"`
	SID string `json:"sid,omitempty"`
	Seq uint64 `json:"seq,omitempty"`
	ID  string `json:"id,omitempty"`
	Pkt []byte `json:"pkt,omitempty"`
	Gen int    `json:"gen,omitempty"`
}

type wal struct {
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
}

func openWAL(path string) (*wal, []walRecord, error) {
	var records []walRecord
	if data, err := os.ReadFile(path); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			var r walRecord
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				break // a torn last line after a kill: everything before it is whole
			}
			records = append(records, r)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	return &wal{f: f, w: bufio.NewWriter(f)}, records, nil
}

func (w *wal) append(r walRecord) {
	if w == nil {
		return
	}
	raw, _ := json.Marshal(r)
	w.mu.Lock()
	_, _ = w.w.Write(raw)
	_ = w.w.WriteByte('\n')
	_ = w.w.Flush() // in the page cache before the call returns: survives SIGKILL
	w.mu.Unlock()
}

// ---- the hub's per-step delivery queue --------------------------------------------------------

type item struct {
	seq   uint64
	id    string
	pkt   *transportpb.DataResponse
	sent  bool
	raw   bool // outside the sequence: dropped once sent, never acknowledged
	bench int  // 1 + its index in the running bench command's packets, 0 outside one
	// wire is pkt encoded (bench copies: the shared packet is encoded once per bench command,
	// each copy only adds its envelope), sent as is; nil outside a bench
	wire *preEncoded
}

// size is the packet's encoded size, what the engram's receipt must name as size_bytes.
func (it *item) size() int {
	if it.wire != nil {
		return len(it.wire.shared) + len(it.wire.own)
	}
	return proto.Size(it.pkt)
}

// preEncoded is a DataResponse already in its wire form, sent unchanged by wireCodec: the
// bytes every bench copy shares (read only), then the copy's own (its envelope field).
type preEncoded struct{ shared, own []byte }

// wireCodec is gRPC's proto codec, plus preEncoded messages sent without a second encoding.
type wireCodec struct{ encoding.CodecV2 }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if p, ok := v.(*preEncoded); ok {
		if len(p.own) == 0 {
			return mem.BufferSlice{mem.SliceBuffer(p.shared)}, nil
		}
		return mem.BufferSlice{mem.SliceBuffer(p.shared), mem.SliceBuffer(p.own)}, nil
	}
	return c.CodecV2.Marshal(v)
}

// envelopeField is DataResponse.envelope's field number, for appending a copy's own envelope
// to the bench packet's encoded bytes.
var envelopeField = (&transportpb.DataResponse{}).ProtoReflect().Descriptor().Fields().ByName("envelope").Number()

type queue struct {
	mu       sync.Mutex
	cond     *sync.Cond
	sid      string
	nextSeq  uint64
	items    []*item // unacknowledged, in sequence order
	ids      map[string]bool
	wal      *wal
	window   int
	inflight int
	closed   bool
	sequence bool
}

func newQueue(sid string, window int, sequence bool) *queue {
	q := &queue{sid: sid, nextSeq: 1, ids: map[string]bool{}, window: window, sequence: sequence}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// enqueue stores a packet for delivery; a message id seen before is dropped (idempotent
// publish). It reports whether the packet was new.
func (q *queue) enqueue(id string, pkt *transportpb.DataResponse, dedupe bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if dedupe && id != "" && q.ids[id] {
		return false
	}
	if id != "" {
		q.ids[id] = true
	}
	it := &item{id: id, pkt: pkt}
	if q.sequence {
		it.seq = q.nextSeq
		q.nextSeq++
		if pkt.Envelope == nil {
			pkt.Envelope = &transportpb.StreamEnvelope{}
		}
		pkt.Envelope.StreamId = q.sid
		pkt.Envelope.Sequence = it.seq
	}
	if q.wal != nil {
		raw, _ := proto.Marshal(pkt)
		q.wal.append(walRecord{T: "enq", SID: q.sid, Seq: it.seq, ID: id, Pkt: raw})
	}
	q.items = append(q.items, it)
	q.cond.Broadcast()
	return true
}

// enqueueBench queues the bench packet number index (see the bench command), waiting while
// limit packets are queued already so the queue stays short (acks scan it).
func (q *queue) enqueueBench(pkt *transportpb.DataResponse, base []byte, index, limit int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) >= limit && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return false
	}
	it := &item{pkt: pkt, bench: index + 1}
	if q.sequence {
		it.seq = q.nextSeq
		q.nextSeq++
		if pkt.Envelope == nil {
			pkt.Envelope = &transportpb.StreamEnvelope{}
		}
		pkt.Envelope.StreamId = q.sid
		pkt.Envelope.Sequence = it.seq
	}
	// base is the packet without its envelope; a field may come in any order on the wire
	var own []byte
	if pkt.Envelope != nil {
		env, err := proto.Marshal(pkt.Envelope)
		if err != nil {
			return false
		}
		own = protowire.AppendTag(make([]byte, 0, len(env)+4), envelopeField, protowire.BytesType)
		own = protowire.AppendBytes(own, env)
	}
	it.wire = &preEncoded{shared: base, own: own}
	q.items = append(q.items, it)
	q.cond.Broadcast()
	return true
}

func (q *queue) has(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ids[id]
}

// ack removes the packet a receipt names; false when no such packet is pending.
func (q *queue) ack(sid string, seq uint64) (*item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if sid != q.sid {
		return nil, false
	}
	for i, it := range q.items {
		if it.seq == seq {
			q.items = append(q.items[:i], q.items[i+1:]...)
			if it.sent {
				q.inflight--
			}
			q.wal.append(walRecord{T: "ack", SID: sid, Seq: seq})
			q.cond.Broadcast()
			return it, true
		}
	}
	return nil, false
}

func (q *queue) find(sid string, seq uint64) *item {
	q.mu.Lock()
	defer q.mu.Unlock()
	if sid != q.sid {
		return nil
	}
	for _, it := range q.items {
		if it.seq == seq {
			return it
		}
	}
	return nil
}

// resetSession marks every pending packet unsent: a new Data stream gets them all again.
func (q *queue) resetSession() {
	q.mu.Lock()
	for _, it := range q.items {
		it.sent = false
	}
	q.inflight = 0
	q.cond.Broadcast()
	q.mu.Unlock()
}

// next blocks until a packet may be sent (unsent and within the window), or done closes.
func (q *queue) next(done <-chan struct{}) (*item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		select {
		case <-done:
			return nil, false
		default:
		}
		if q.closed {
			return nil, false
		}
		if q.window <= 0 || q.inflight < q.window {
			for _, it := range q.items {
				if !it.sent {
					it.sent = true
					q.inflight++
					if !q.sequence || it.raw {
						// nothing to acknowledge: delivered is done
						q.removeLocked(it)
					}
					return it, true
				}
			}
		}
		q.cond.Wait()
	}
}

func (q *queue) removeLocked(target *item) {
	for i, it := range q.items {
		if it == target {
			q.items = append(q.items[:i], q.items[i+1:]...)
			q.inflight--
			return
		}
	}
}

func (q *queue) wake() {
	q.mu.Lock()
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *queue) pending() (int, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items), q.inflight
}

// ---- steps ------------------------------------------------------------------------------------

type counters struct {
	DataStreams       int `json:"dataStreams"`
	ControlStreams    int `json:"controlStreams"`
	Refused           int `json:"refused"`
	Delivered         int `json:"delivered"`
	Published         int `json:"published"`
	DuplicatesDropped int `json:"duplicatesDropped"`
	Invalid           int `json:"invalid"`
	DataHeartbeats    int `json:"dataHeartbeats"`
	ControlHeartbeats int `json:"controlHeartbeats"`
	HubHeartbeats     int `json:"hubHeartbeats"` // the hub's heartbeats sent to the engram
	Receipts          int `json:"receipts"`
	Stored            int `json:"stored"`     // packets ever queued for this step (log included)
	AckedTotal        int `json:"ackedTotal"` // receipted packets, this run and the logged ones
	ReceiptsUnmatched int `json:"receiptsUnmatched"`
	ReceiptsParked    int `json:"receiptsParked"`
	ReceiptSizeErrors int `json:"receiptSizeErrors"`
	Acked             int `json:"acked"`
}

type step struct {
	transportpb.UnimplementedTransportConnectorServiceServer
	name       string
	hub        *hub
	addr       string
	lis        net.Listener
	srv        *grpc.Server
	q          *queue
	downstream string

	mu        sync.Mutex
	c         counters
	parked    map[string][2]any // message id -> (stream id, sequence) of a receipt waiting for output
	ctlSend   chan *transportpb.ControlResponse
	stall     bool
	stallCond *sync.Cond
	dataGen   int
	bench     *benchRun
}

// benchRun is one bench command in progress: when each of its packets left on the Data stream
// and when each echo came back (the k-th packet the engram publishes answers the k-th sent:
// one stream, in order).
type benchRun struct {
	total    int
	started  time.Time
	sentAt   []time.Time
	echoedAt []time.Time
	finished chan struct{}
}

type hub struct {
	ns, run    string
	steps      map[string]*step
	order      []string
	routes     map[string]string
	caps       string
	capsMeta   map[string]string
	settings   []byte
	stateDir   string
	generation int
	record     bool
	hubBeat    time.Duration
	grace      time.Duration
}

func (h *hub) baseSID(stepName string) string { return h.ns + "/" + h.run + "/" + stepName }

func checkProtocol(ctx context.Context) (metadata.MD, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get(coretransport.ProtocolMetadataKey)
	version := ""
	if len(values) > 0 {
		version = values[0]
	}
	if err := coretransport.ValidateProtocolVersion(version); err != nil {
		return md, status.Error(codes.FailedPrecondition, err.Error())
	}
	return md, nil
}

func headers(md metadata.MD) map[string]string {
	out := map[string]string{}
	for k, v := range md {
		if len(v) > 0 {
			out[k] = v[0]
		}
	}
	return out
}

func (s *step) count(f func(c *counters)) {
	s.mu.Lock()
	f(&s.c)
	s.mu.Unlock()
}

// Data: deliver the step's queue to the engram and take what it publishes.
func (s *step) Data(stream grpc.BidiStreamingServer[transportpb.DataRequest, transportpb.DataResponse]) error {
	md, err := checkProtocol(stream.Context())
	if err != nil {
		s.count(func(c *counters) { c.Refused++ })
		emit(map[string]any{"ev": "refused", "step": s.name, "stream": "data", "error": err.Error()})
		return err
	}
	s.mu.Lock()
	s.c.DataStreams++
	s.dataGen++
	gen := s.dataGen
	s.mu.Unlock()
	emit(map[string]any{"ev": "stream", "step": s.name, "stream": "data", "headers": headers(md), "t": time.Now().UnixNano()})
	s.q.resetSession()

	done := make(chan struct{})
	sendErr := make(chan error, 1)
	go func() {
		for {
			it, ok := s.q.next(done)
			if !ok {
				sendErr <- nil
				return
			}
			if it.bench > 0 {
				s.mu.Lock()
				if b := s.bench; b != nil && it.bench <= b.total && b.sentAt[it.bench-1].IsZero() {
					b.sentAt[it.bench-1] = time.Now()
				}
				s.mu.Unlock()
			}
			var err error
			if it.wire != nil {
				err = stream.SendMsg(it.wire)
			} else {
				err = stream.Send(it.pkt)
			}
			if err != nil {
				sendErr <- err
				return
			}
			s.count(func(c *counters) { c.Delivered++ })
		}
	}()
	var beat <-chan time.Time
	if s.hub.hubBeat > 0 {
		t := time.NewTicker(s.hub.hubBeat)
		defer t.Stop()
		beat = t.C
	}
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			s.published(req)
		}
	}()
	var result error
loop:
	for {
		select {
		case err := <-recvErr:
			if !errors.Is(err, io.EOF) {
				result = err
			}
			break loop
		case err := <-sendErr:
			result = err
			break loop
		case <-beat:
			// the hub's heartbeat, turned into an envelope frame by the connector
			if stream.Send(heartbeatPacket()) == nil {
				s.count(func(c *counters) { c.HubHeartbeats++ })
			}
		case <-stream.Context().Done():
			break loop
		}
	}
	close(done)
	s.q.wake()
	emit(map[string]any{"ev": "closed", "step": s.name, "stream": "data", "gen": gen, "error": errText(result)})
	return result
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func heartbeatPacket() *transportpb.DataResponse {
	return &transportpb.DataResponse{
		Frame: &transportpb.DataResponse_Binary{Binary: &transportpb.BinaryFrame{
			Payload:  []byte(`{"version":"v1","kind":"heartbeat","metadata":{"bubu-heartbeat":"true"},"payload":{}}`),
			MimeType: "application/vnd.bubu.packet+json",
		}},
		Metadata: map[string]string{heartbeatKey: "true"},
	}
}

// published handles one packet the engram sent: heartbeats are counted, everything else is
// validated with the buf.validate rules and routed to the downstream step (hub role).
func (s *step) published(req *transportpb.DataRequest) {
	if strings.EqualFold(req.GetMetadata()[heartbeatKey], "true") && req.GetFrame() == nil {
		s.count(func(c *counters) { c.DataHeartbeats++ })
		return
	}
	if err := validation.Validate(req); err != nil {
		s.count(func(c *counters) { c.Invalid++ })
		emit(map[string]any{"ev": "invalid", "step": s.name, "error": err.Error()})
		return
	}
	now := time.Now()
	s.mu.Lock()
	s.c.Published++
	if b := s.bench; b != nil && len(b.echoedAt) < b.total {
		b.echoedAt = append(b.echoedAt, now)
		if len(b.echoedAt) == b.total {
			close(b.finished)
		}
	}
	s.mu.Unlock()
	id := req.GetMetadata()[messageIDKey]
	if s.hub.record {
		raw, _ := proto.MarshalOptions{Deterministic: true}.Marshal(req)
		emit(map[string]any{"ev": "published", "step": s.name, "id": id, "packet": raw})
	}
	if s.downstream == "" {
		return
	}
	// DataRequest and DataResponse share their field numbers: re-read the bytes as the
	// packet the hub forwards, then stamp it as the hub does (docs/contract/stream.md#hub-packet).
	raw, _ := proto.Marshal(req)
	pkt := &transportpb.DataResponse{}
	_ = proto.Unmarshal(raw, pkt)
	if pkt.Metadata == nil {
		pkt.Metadata = map[string]string{}
	}
	pkt.Metadata["storyrun-name"] = s.hub.run
	pkt.Metadata["storyrun-namespace"] = s.hub.ns
	pkt.Metadata["current-step-id"] = s.downstream
	if pkt.Envelope != nil {
		pkt.Envelope.StreamId = ""
		pkt.Envelope.Sequence = 0
	}
	down := s.hub.steps[s.downstream]
	if down.q.enqueue(id, pkt, s.hub.stateDir != "") {
		down.count(func(c *counters) { c.Stored++ })
	} else {
		s.count(func(c *counters) { c.DuplicatesDropped++ })
	}
	s.outputStored(id)
}

// outputStored applies a receipt that waited for this step's output with the same id.
func (s *step) outputStored(id string) {
	if id == "" {
		return
	}
	s.mu.Lock()
	parked, ok := s.parked[id]
	if ok {
		delete(s.parked, id)
	}
	s.mu.Unlock()
	if ok {
		s.applyAck(parked[0].(string), parked[1].(uint64))
	}
}

func (s *step) applyAck(sid string, seq uint64) {
	if _, ok := s.q.ack(sid, seq); ok {
		s.count(func(c *counters) { c.Acked++; c.AckedTotal++ })
	}
}

// Control: the handshake, directives from tests, and the engram's requests.
func (s *step) Control(stream grpc.BidiStreamingServer[transportpb.ControlRequest, transportpb.ControlResponse]) error {
	md, err := checkProtocol(stream.Context())
	if err != nil {
		s.count(func(c *counters) { c.Refused++ })
		emit(map[string]any{"ev": "refused", "step": s.name, "stream": "control", "error": err.Error()})
		return err
	}
	s.count(func(c *counters) { c.ControlStreams++ })
	emit(map[string]any{"ev": "stream", "step": s.name, "stream": "control", "headers": headers(md), "t": time.Now().UnixNano()})
	send := make(chan *transportpb.ControlResponse, 64)
	s.mu.Lock()
	s.ctlSend = send
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.ctlSend == send {
			s.ctlSend = nil
		}
		s.mu.Unlock()
	}()

	ready := map[string]string{}
	if s.hub.caps != "omit" {
		ready[coretransport.StartupCapabilitiesMetadataKey] = s.hub.caps
	}
	send <- &transportpb.ControlResponse{Action: transportpb.ControlAction_CONTROL_ACTION_CONNECTOR_READY, Metadata: ready}
	send <- &transportpb.ControlResponse{Action: transportpb.ControlAction_CONTROL_ACTION_CONNECTOR_CAPABILITIES, Metadata: s.hub.capsMeta}
	send <- &transportpb.ControlResponse{
		Action: transportpb.ControlAction_CONTROL_ACTION_HANDOFF_CUTOVER,
		Metadata: map[string]string{
			"phase": "cutover", "reason": "hub_connected", "ts": strconv.FormatInt(time.Now().UnixMilli(), 10),
		},
	}

	ctx := stream.Context()
	sendErr := make(chan error, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				sendErr <- nil
				return
			case resp := <-send:
				if err := stream.Send(resp); err != nil {
					sendErr <- err
					return
				}
			}
		}
	}()
	recvErr := make(chan error, 1)
	go func() {
		for {
			s.waitUnstalled()
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if reply := s.onControl(req); reply != nil {
				select {
				case send <- reply:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var result error
	select {
	case err := <-recvErr:
		if !errors.Is(err, io.EOF) {
			result = err
		}
	case err := <-sendErr:
		result = err
	case <-ctx.Done():
	}
	emit(map[string]any{"ev": "closed", "step": s.name, "stream": "control", "error": errText(result)})
	return result
}

func (s *step) waitUnstalled() {
	s.mu.Lock()
	for s.stall {
		s.stallCond.Wait()
	}
	s.mu.Unlock()
}

var actionNames = map[transportpb.ControlAction]string{
	transportpb.ControlAction_CONTROL_ACTION_NOOP:                   "noop",
	transportpb.ControlAction_CONTROL_ACTION_START:                  "start",
	transportpb.ControlAction_CONTROL_ACTION_STOP:                   "stop",
	transportpb.ControlAction_CONTROL_ACTION_START_UPSTREAM:         "start-upstream",
	transportpb.ControlAction_CONTROL_ACTION_STOP_UPSTREAM:          "stop-upstream",
	transportpb.ControlAction_CONTROL_ACTION_START_DOWNSTREAM:       "start-downstream",
	transportpb.ControlAction_CONTROL_ACTION_STOP_DOWNSTREAM:        "stop-downstream",
	transportpb.ControlAction_CONTROL_ACTION_HEARTBEAT:              "heartbeat",
	transportpb.ControlAction_CONTROL_ACTION_CONNECTOR_READY:        "connector.ready",
	transportpb.ControlAction_CONTROL_ACTION_CONNECTOR_CAPABILITIES: "connector.capabilities",
	transportpb.ControlAction_CONTROL_ACTION_HANDOFF_DRAINING:       "handoff.draining",
	transportpb.ControlAction_CONTROL_ACTION_HANDOFF_CUTOVER:        "handoff.cutover",
	transportpb.ControlAction_CONTROL_ACTION_HANDOFF_READY:          "handoff.ready",
	transportpb.ControlAction_CONTROL_ACTION_ACK:                    "ack",
	transportpb.ControlAction_CONTROL_ACTION_ERROR:                  "error",
	transportpb.ControlAction_CONTROL_ACTION_CODEC_SELECT:           "codec-select",
}

func actionType(action transportpb.ControlAction, custom string) string {
	if c := strings.TrimSpace(custom); c != "" {
		return strings.ToLower(c)
	}
	return actionNames[action]
}

func ack(received string, handled bool, extra ...string) *transportpb.ControlResponse {
	md := map[string]string{"received": received, "handled": strconv.FormatBool(handled)}
	for i := 0; i+1 < len(extra); i += 2 {
		md[extra[i]] = extra[i+1]
	}
	return &transportpb.ControlResponse{Action: transportpb.ControlAction_CONTROL_ACTION_ACK, Metadata: md}
}

// onControl answers an engram request as the connector does (docs/contract/stream.md#control).
func (s *step) onControl(req *transportpb.ControlRequest) *transportpb.ControlResponse {
	if err := validation.Validate(req); err != nil {
		s.count(func(c *counters) { c.Invalid++ })
		emit(map[string]any{"ev": "invalid", "step": s.name, "error": err.Error()})
		return nil
	}
	typ := actionType(req.GetAction(), req.GetCustomAction())
	md := req.GetMetadata()
	if typ == "downstream.delivered" {
		s.onReceipt(md)
		return nil
	}
	if !quiet || typ != "heartbeat" {
		emit(map[string]any{"ev": "control", "step": s.name, "type": typ, "action": req.GetAction().String(),
			"custom": req.GetCustomAction(), "metadata": md})
	}
	switch typ {
	case "noop", "":
		return ack("noop", false, "reason", "empty")
	case "heartbeat":
		s.count(func(c *counters) { c.ControlHeartbeats++ })
		return ack("heartbeat", true, "status", "alive")
	case "ack":
		return nil
	case "start", "resume", "stop", "pause", "start-upstream", "stop-upstream", "start-downstream", "stop-downstream":
		return ack(typ, true)
	case "codec-select":
		return ack(typ, false, "reason", "codec selection not implemented")
	default:
		return ack(typ, false, "reason", "unknown")
	}
}

func (s *step) onReceipt(md map[string]string) {
	sid := md["stream_id"]
	seq, err := strconv.ParseUint(md["sequence"], 10, 64)
	size, _ := strconv.Atoi(md["size_bytes"])
	s.count(func(c *counters) { c.Receipts++ })
	it := s.q.find(sid, seq)
	expected := -1
	if it != nil {
		expected = it.size()
		if expected != size {
			s.count(func(c *counters) { c.ReceiptSizeErrors++ })
		}
	}
	if !quiet {
		emit(map[string]any{"ev": "receipt", "step": s.name, "stream_id": sid, "sequence": md["sequence"],
			"partition": md["partition"], "size_bytes": size, "expected_size": expected})
	}
	if err != nil || it == nil {
		s.count(func(c *counters) { c.ReceiptsUnmatched++ })
		return
	}
	if s.downstream != "" && s.hub.stateDir != "" && it.id != "" {
		// commit only once the output with the same message id is stored downstream
		if !s.hub.steps[s.downstream].q.has(it.id) {
			s.mu.Lock()
			s.parked[it.id] = [2]any{sid, seq}
			s.c.ReceiptsParked++
			s.mu.Unlock()
			// the output may have been stored between the check and the park
			if s.hub.steps[s.downstream].q.has(it.id) {
				s.outputStored(it.id)
			}
			return
		}
	}
	s.applyAck(sid, seq)
}

// ---- commands (stdin) -------------------------------------------------------------------------

type command struct {
	Cmd      string            `json:"cmd"`
	Step     string            `json:"step"`
	Packet   []byte            `json:"packet"`
	Type     string            `json:"type"`
	Metadata map[string]string `json:"metadata"`
	Seq      int               `json:"seq"`
	Counter  string            `json:"counter"`
	Value    int               `json:"value"`
}

// counter reads one of the step's counters by its JSON name.
func (s *step) counter(name string) (int, bool) {
	s.mu.Lock()
	raw, _ := json.Marshal(s.c)
	s.mu.Unlock()
	var all map[string]int
	_ = json.Unmarshal(raw, &all)
	v, ok := all[name]
	return v, ok
}

func (h *hub) handle(cmd command, stop func()) {
	s := h.steps[cmd.Step]
	reply := map[string]any{"ev": "done", "cmd": cmd.Cmd, "seq": cmd.Seq}
	switch cmd.Cmd {
	case "send", "send_raw":
		if s == nil {
			reply["error"] = "unknown step"
			break
		}
		pkt := &transportpb.DataResponse{}
		if err := proto.Unmarshal(cmd.Packet, pkt); err != nil {
			reply["error"] = err.Error()
			break
		}
		if cmd.Cmd == "send" {
			s.q.enqueue(pkt.GetMetadata()[messageIDKey], pkt, false)
			s.count(func(c *counters) { c.Stored++ })
		} else {
			// outside the sequence and the log: sent as given, next in line
			q := s.q
			q.mu.Lock()
			q.items = append([]*item{{pkt: pkt, raw: true}}, q.items...)
			q.cond.Broadcast()
			q.mu.Unlock()
		}
	case "flood":
		// enqueue Value copies of one packet at once (load for a benchmark, no stdin per packet)
		if s == nil {
			reply["error"] = "unknown step"
			break
		}
		for i := 0; i < cmd.Value; i++ {
			pkt := &transportpb.DataResponse{}
			if err := proto.Unmarshal(cmd.Packet, pkt); err != nil {
				reply["error"] = err.Error()
				break
			}
			s.q.enqueue("", pkt, false)
		}
		s.count(func(c *counters) { c.Stored += cmd.Value })
		reply["started"] = time.Now().UnixNano()
	case "bench":
		// Value copies of one packet through the step's engram, which is to echo them: the
		// answer (when every echo is back and every packet receipted) has the rate and the
		// send-to-echo latencies. The copies are queued as the window moves, not all at once.
		if s == nil {
			reply["error"] = "unknown step"
			break
		}
		template := &transportpb.DataResponse{}
		if err := proto.Unmarshal(cmd.Packet, template); err != nil || cmd.Value <= 0 {
			reply["error"] = fmt.Sprintf("bad bench packet or count: %v", err)
			break
		}
		go s.runBench(template, cmd.Value, reply)
		return
	case "control":
		if s == nil {
			reply["error"] = "unknown step"
			break
		}
		resp := &transportpb.ControlResponse{Metadata: cmd.Metadata}
		found := false
		for action, name := range actionNames {
			if name == cmd.Type {
				resp.Action = action
				found = true
			}
		}
		if !found {
			resp.CustomAction = cmd.Type
		}
		s.mu.Lock()
		ch := s.ctlSend
		s.mu.Unlock()
		if ch == nil {
			reply["error"] = "no control stream"
			break
		}
		ch <- resp
	case "stall_control", "resume_control":
		s.mu.Lock()
		s.stall = cmd.Cmd == "stall_control"
		s.stallCond.Broadcast()
		s.mu.Unlock()
	case "stats":
		stats := map[string]any{}
		for _, name := range h.order {
			st := h.steps[name]
			st.mu.Lock()
			c := st.c
			parked := len(st.parked)
			st.mu.Unlock()
			pending, inflight := st.q.pending()
			stats[name] = map[string]any{"counters": c, "pending": pending, "inflight": inflight,
				"parked": parked, "streamId": st.q.sid}
		}
		reply["stats"] = stats
	case "await":
		// reply once the step's counter reaches the value (tests wait on this, not on sleeps)
		if s == nil {
			reply["error"] = "unknown step"
			break
		}
		if _, ok := s.counter(cmd.Counter); !ok {
			reply["error"] = "unknown counter"
			break
		}
		go func() {
			for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); {
				if v, _ := s.counter(cmd.Counter); v >= cmd.Value {
					reply["value"] = v
					emit(reply)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		return
	case "await_acked":
		// reply once the packet with sequence Value on the step's stream left the queue
		if s == nil {
			reply["error"] = "unknown step"
			break
		}
		go func() {
			seq := uint64(cmd.Value)
			for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); {
				s.q.mu.Lock()
				sid, next := s.q.sid, s.q.nextSeq
				s.q.mu.Unlock()
				if seq < next && s.q.find(sid, seq) == nil {
					emit(reply)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		return
	case "stop":
		emit(reply)
		stop()
		return
	default:
		reply["error"] = "unknown command"
	}
	emit(reply)
}

func (s *step) runBench(template *transportpb.DataResponse, n int, reply map[string]any) {
	// the packet without its envelope, encoded once: each copy adds its own envelope
	base, err := proto.Marshal(&transportpb.DataResponse{Payload: template.Payload, Inputs: template.Inputs,
		Frame: template.Frame, Metadata: template.Metadata, Transports: template.Transports})
	if err != nil {
		reply["error"] = fmt.Sprintf("bench packet: %v", err)
		emit(reply)
		return
	}
	b := &benchRun{total: n, sentAt: make([]time.Time, n), echoedAt: make([]time.Time, 0, n),
		finished: make(chan struct{})}
	s.mu.Lock()
	s.bench = b
	s.mu.Unlock()
	limit := s.q.window*2 + 64
	b.started = time.Now()
	// the profile is complete before the answer goes out (the caller may stop the process then)
	stopProfile := func() {}
	if benchProfile != "" {
		if f, err := os.Create(benchProfile); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				stopProfile = func() { pprof.StopCPUProfile(); _ = f.Close() }
			} else {
				_ = f.Close()
			}
		}
	}
	defer func() { stopProfile() }()
	for i := 0; i < n; i++ {
		// A shallow copy with its own envelope: the queue stamps the envelope, nothing writes
		// the payload, frames or metadata (a deep clone of a Struct would be the hub's
		// biggest cost per packet, and the real hub has no such step).
		pkt := &transportpb.DataResponse{Payload: template.Payload, Inputs: template.Inputs,
			Frame: template.Frame, Metadata: template.Metadata, Transports: template.Transports}
		if template.Envelope != nil {
			pkt.Envelope = proto.Clone(template.Envelope).(*transportpb.StreamEnvelope)
		}
		if !s.q.enqueueBench(pkt, base, i, limit) {
			reply["error"] = "connector stopped"
			emit(reply)
			return
		}
	}
	s.count(func(c *counters) { c.Stored += n })
	<-b.finished
	// every packet receipted too (the window moves on receipts)
	s.q.mu.Lock()
	for len(s.q.items) > 0 && !s.q.closed {
		s.q.cond.Wait()
	}
	s.q.mu.Unlock()
	done := time.Now()
	s.mu.Lock()
	s.bench = nil
	s.mu.Unlock()
	lat := make([]float64, n)
	for i := range lat {
		lat[i] = float64(b.echoedAt[i].Sub(b.sentAt[i]).Nanoseconds()) / 1e3
	}
	sort.Float64s(lat)
	last := b.echoedAt[n-1]
	reply["messages"] = n
	reply["seconds"] = last.Sub(b.started).Seconds()
	reply["rate"] = float64(n) / last.Sub(b.started).Seconds()
	reply["p50_us"] = lat[n/2]
	reply["p99_us"] = lat[min(n-1, n*99/100)]
	reply["receipted_s"] = done.Sub(b.started).Seconds()
	stopProfile()
	stopProfile = func() {}
	emit(reply)
}

// ---- main -------------------------------------------------------------------------------------

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var stepFlags, routeFlags multiFlag
	flag.Var(&stepFlags, "step", "name=host:port (repeatable; port 0 picks one)")
	flag.Var(&routeFlags, "route", "from=to: deliver what step 'from' publishes to step 'to' (repeatable)")
	ns := flag.String("namespace", "default", "namespace of the binding and the hub's stream ids")
	run := flag.String("storyrun", "interop-run", "StoryRun name stamped on delivered packets")
	caps := flag.String("startup-capabilities", "none", "connector.ready startup.capabilities (none, required, omit, or any text)")
	settings := flag.String("settings", "{}", "BindingInfo.payload JSON (for example {\"env\": {...}})")
	stateDir := flag.String("state", "", "write-ahead log directory (survive SIGKILL and restart)")
	window := flag.Int("window", 64, "packets in flight per step before receipts must arrive (0: unlimited)")
	unsequenced := flag.Bool("unsequenced", false, "deliver without envelope sequences (no receipts)")
	record := flag.Bool("record", false, "emit a 'published' event with the bytes of every engram packet")
	quietFlag := flag.Bool("quiet", false, "no per-receipt and per-heartbeat events")
	staticWindow := flag.Bool("static-window", false, "fixed 64 KiB HTTP/2 windows (no BDP growth)")
	hubBeat := flag.Duration("hub-heartbeat", 0, "send the hub's heartbeat packet this often (0: never)")
	grace := flag.Duration("grace", 5*time.Second, "GracefulStop cap before a hard stop")
	flag.StringVar(&benchProfile, "bench-profile", "", "write a CPU profile of each bench command here")
	flag.Parse()
	quiet = *quietFlag

	h := &hub{
		ns: *ns, run: *run, steps: map[string]*step{}, routes: map[string]string{}, caps: *caps,
		capsMeta: map[string]string{
			"audio.codec": "pcm16", "audio.sample_rate_hz": "16000", "audio.channels": "1",
			"video.codec": "h264", "video.profile": "", "binary.mime": "application/json",
		},
		settings: []byte(*settings), stateDir: *stateDir, record: *record, hubBeat: *hubBeat, grace: *grace,
	}
	for _, r := range routeFlags {
		from, to, ok := strings.Cut(r, "=")
		if !ok {
			fail("bad --route %q", r)
		}
		h.routes[from] = to
	}
	var records map[string][]walRecord
	var wals map[string]*wal
	if h.stateDir != "" {
		records, wals = map[string][]walRecord{}, map[string]*wal{}
		if err := os.MkdirAll(h.stateDir, 0o700); err != nil {
			fail("state dir: %v", err)
		}
		genWAL, genRecords, err := openWAL(filepath.Join(h.stateDir, "generation.wal"))
		if err != nil {
			fail("state: %v", err)
		}
		h.generation = len(genRecords) + 1
		genWAL.append(walRecord{T: "gen", Gen: h.generation})
	} else {
		h.generation = 1
	}

	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(10 << 20), grpc.MaxSendMsgSize(10 << 20),
		grpc.ForceServerCodecV2(wireCodec{encoding.GetCodecV2("proto")})}
	if *staticWindow {
		opts = append(opts, grpc.InitialWindowSize(65535), grpc.InitialConnWindowSize(65535))
	}
	listening := map[string]any{}
	for _, spec := range stepFlags {
		name, addr, ok := strings.Cut(spec, "=")
		if !ok {
			fail("bad --step %q", spec)
		}
		s := &step{name: name, hub: h, downstream: h.routes[name], parked: map[string][2]any{}}
		s.stallCond = sync.NewCond(&s.mu)
		s.q = newQueue(h.baseSID(name), *window, !*unsequenced)
		if h.stateDir != "" {
			w, recs, err := openWAL(filepath.Join(h.stateDir, name+".wal"))
			if err != nil {
				fail("state: %v", err)
			}
			wals[name], records[name] = w, recs
		}
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			fail("listen %s: %v", addr, err)
		}
		s.lis, s.addr = lis, lis.Addr().String()
		s.srv = grpc.NewServer(opts...)
		transportpb.RegisterTransportConnectorServiceServer(s.srv, s)
		h.steps[name] = s
		h.order = append(h.order, name)
	}
	for name, s := range h.steps {
		if h.stateDir != "" {
			s.restore(records[name], wals[name])
		}
		env, err := coretransport.EncodeBindingEnvelope(
			coretransport.BindingReference{Name: name + "-binding", Namespace: h.ns},
			&transportpb.BindingInfo{
				TransportRef: "interop", Driver: "interop-connector", Endpoint: s.addr,
				Payload: h.settings, ProtocolVersion: coretransport.ProtocolVersion,
			},
		)
		if err != nil {
			fail("binding: %v", err)
		}
		listening[name] = map[string]any{"addr": s.addr, "binding": env, "streamId": s.q.sid}
	}
	emit(map[string]any{"ev": "listening", "steps": listening, "generation": h.generation, "pid": os.Getpid()})

	var wg sync.WaitGroup
	for _, s := range h.steps {
		wg.Add(1)
		go func(s *step) {
			defer wg.Done()
			_ = s.srv.Serve(s.lis)
		}(s)
	}
	var stopOnce sync.Once
	stopped := make(chan struct{})
	stop := func() {
		stopOnce.Do(func() {
			go func() {
				// GracefulStop refuses new streams and waits for the open ones; the real
				// connector caps that wait at 5 s and then stops hard (docs/contract/stream.md#shutdown).
				var inner sync.WaitGroup
				for _, s := range h.steps {
					inner.Add(1)
					go func(s *step) { defer inner.Done(); s.srv.GracefulStop() }(s)
				}
				finished := make(chan struct{})
				go func() { inner.Wait(); close(finished) }()
				select {
				case <-finished:
				case <-time.After(h.grace):
					for _, s := range h.steps {
						s.srv.Stop()
					}
				}
				for _, s := range h.steps {
					s.q.mu.Lock()
					s.q.closed = true
					s.q.cond.Broadcast()
					s.q.mu.Unlock()
				}
				close(stopped)
			}()
		})
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sigs; stop() }()
	go func() {
		scanner := bufio.NewScanner(os.Stdin)
		scanner.Buffer(make([]byte, 0, 1<<20), 64<<20)
		for scanner.Scan() {
			var cmd command
			if err := json.Unmarshal(scanner.Bytes(), &cmd); err != nil {
				emit(map[string]any{"ev": "done", "error": err.Error()})
				continue
			}
			h.handle(cmd, stop)
		}
	}()
	<-stopped
	wg.Wait()
	emit(map[string]any{"ev": "stopped"})
}

// restore rebuilds the step's queue from its write-ahead log (see the package comment).
func (s *step) restore(records []walRecord, w *wal) {
	q := s.q
	type entry struct {
		r     walRecord
		acked bool
	}
	var entries []*entry
	index := map[string]*entry{}
	maxSeq := map[string]uint64{}
	for _, r := range records {
		key := r.SID + "|" + strconv.FormatUint(r.Seq, 10)
		switch r.T {
		case "enq":
			e := &entry{r: r}
			entries = append(entries, e)
			index[key] = e
			if r.ID != "" {
				q.ids[r.ID] = true
			}
			if r.Seq > maxSeq[r.SID] {
				maxSeq[r.SID] = r.Seq
			}
		case "ack", "sup":
			if e, ok := index[key]; ok {
				e.acked = true
				if r.T == "ack" {
					s.c.AckedTotal++
				}
			}
		}
	}
	s.c.Stored = len(q.ids)
	q.wal = w
	fresh := s.downstream != ""
	if fresh {
		q.sid = fmt.Sprintf("%s#g%d", s.hub.baseSID(s.name), s.hub.generation)
	}
	var pending []*entry
	for _, e := range entries {
		if !e.acked {
			pending = append(pending, e)
		}
	}
	q.nextSeq = maxSeq[q.sid] + 1
	for _, e := range pending {
		pkt := &transportpb.DataResponse{}
		if err := proto.Unmarshal(e.r.Pkt, pkt); err != nil {
			continue
		}
		if fresh {
			// re-issued under this generation's stream id; the old entry is superseded
			w.append(walRecord{T: "sup", SID: e.r.SID, Seq: e.r.Seq})
			it := &item{seq: q.nextSeq, id: e.r.ID, pkt: pkt}
			q.nextSeq++
			if pkt.Envelope == nil {
				pkt.Envelope = &transportpb.StreamEnvelope{}
			}
			pkt.Envelope.StreamId = q.sid
			pkt.Envelope.Sequence = it.seq
			raw, _ := proto.Marshal(pkt)
			w.append(walRecord{T: "enq", SID: q.sid, Seq: it.seq, ID: it.id, Pkt: raw})
			q.items = append(q.items, it)
		} else {
			q.items = append(q.items, &item{seq: e.r.Seq, id: e.r.ID, pkt: pkt})
		}
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "connector: "+format+"\n", args...)
	os.Exit(2)
}
