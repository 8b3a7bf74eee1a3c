"""Protobuf runtimes on the shape of every data packet: a ~1 KB DataRequest with a Struct payload.

Measures encode (``SerializeToString``) and decode (``FromString``) of a DataRequest carrying a
``google.protobuf.Struct`` built from a 1 KB JSON document, plus the same JSON bytes in a
``BinaryFrame`` and a few metadata entries - the frame ``StreamMessage.json`` produces. Runtimes:

- ``upb``: the official ``protobuf`` package's default backend, with bubu's generated code;
- ``python``: the same generated code under ``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python``
  (run in a subprocess, because the backend is chosen at import time);
- ``betterproto2``: only if a ``--betterproto2-venv`` with ``betterproto2`` and its compiler is
  given (the script generates the classes there with protoc).

Prints µs/op (median of 5 rounds) per runtime. Used by docs/decisions/0001-protobuf-runtime.md.

    python benchmarks/bench_protobuf_runtimes.py [--betterproto2-venv /tmp/bp2venv]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DOC = {
    f"field_{i:02d}": {
        "name": f"item-{i}",
        "count": i * 3,
        "ratio": i / 7,
        "active": i % 2 == 0,
        "tags": ["a", "b", str(i)],
        "note": None,
    }
    for i in range(9)
}
PAYLOAD = json.dumps(DOC, separators=(",", ":")).encode()
METADATA = {
    "bubu.envelope.kind": "data",
    "bubu.envelope.message_id": "msg-000001",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01",
}

# Runs inside a subprocess so the protobuf backend can differ per run. Prints one JSON line.
_OFFICIAL = textwrap.dedent(
    """
    import json, statistics, sys, time
    sys.path.insert(0, {root!r})
    from google.protobuf.internal import api_implementation
    from bubu._gen.transport.v1 import transport_pb2 as pb
    from bubu._transport.codec import dict_to_struct

    payload = {payload!r}
    doc = json.loads(payload)
    req = pb.DataRequest(metadata={metadata!r})
    req.binary.payload = payload
    req.binary.mime_type = "application/json"
    dict_to_struct(doc, req.payload)
    req.envelope.stream_id = "ns/run/step"
    req.envelope.sequence = 42
    wire = req.SerializeToString()

    def bench(fn, n):
        rounds = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            rounds.append((time.perf_counter() - t0) / n * 1e6)
        return statistics.median(rounds)

    n = {n}
    print(json.dumps({{
        "runtime": api_implementation.Type(),
        "bytes": len(wire),
        "encode_us": bench(req.SerializeToString, n),
        "decode_us": bench(lambda: pb.DataRequest.FromString(wire), n),
    }}))
    """
)

_BETTERPROTO2 = textwrap.dedent(
    """
    import json, statistics, sys, time
    sys.path.insert(0, {gen!r})
    from bp2gen.transport.v1 import DataRequest, BinaryFrame, StreamEnvelope
    from bp2gen.google.protobuf import Struct, Value, ListValue, NullValue

    payload = {payload!r}

    def value(v):
        if isinstance(v, bool):
            return Value(bool_value=v)
        if isinstance(v, (int, float)):
            return Value(number_value=float(v))
        if isinstance(v, str):
            return Value(string_value=v)
        if v is None:
            return Value(null_value=NullValue(0))
        if isinstance(v, list):
            return Value(list_value=ListValue(values=[value(x) for x in v]))
        return Value(struct_value=Struct(fields={{k: value(x) for k, x in v.items()}}))

    req = DataRequest(
        metadata={metadata!r},
        binary=BinaryFrame(payload=payload, mime_type="application/json"),
        payload=Struct(fields={{k: value(x) for k, x in json.loads(payload).items()}}),
        envelope=StreamEnvelope(stream_id="ns/run/step", sequence=42),
    )
    wire = bytes(req)

    def bench(fn, n):
        rounds = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            rounds.append((time.perf_counter() - t0) / n * 1e6)
        return statistics.median(rounds)

    n = {n}
    print(json.dumps({{
        "runtime": "betterproto2",
        "bytes": len(wire),
        "encode_us": bench(lambda: bytes(req), n),
        "decode_us": bench(lambda: DataRequest().parse(wire), n),
    }}))
    """
)


def _run(python: str, code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run(
        [python, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _betterproto2(venv: Path, n: int) -> dict[str, object]:
    python = str(venv / "bin" / "python")
    gen = Path(tempfile.mkdtemp(prefix="bp2-"))
    (gen / "bp2gen").mkdir()
    plugin = venv / "bin" / "protoc-gen-python_betterproto2"
    subprocess.run(
        [
            python,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'protos'}",
            f"--plugin=protoc-gen-python_betterproto2={plugin}",
            f"--python_betterproto2_out={gen / 'bp2gen'}",
            "transport/v1/transport.proto",
        ],
        check=True,
        cwd=ROOT / "protos",
    )
    code = _BETTERPROTO2.format(gen=str(gen), payload=PAYLOAD, metadata=METADATA, n=n)
    return _run(python, code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="operations per round (upb)")
    parser.add_argument("--betterproto2-venv", type=Path, default=None)
    ns = parser.parse_args()

    results = []
    code = _OFFICIAL.format(root=str(ROOT), payload=PAYLOAD, metadata=METADATA, n=ns.n)
    results.append(_run(sys.executable, code))
    slow_code = _OFFICIAL.format(
        root=str(ROOT), payload=PAYLOAD, metadata=METADATA, n=max(ns.n // 20, 200)
    )
    results.append(
        _run(sys.executable, slow_code, {"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"})
    )
    if ns.betterproto2_venv is not None:
        try:
            results.append(_betterproto2(ns.betterproto2_venv, max(ns.n // 20, 200)))
        except subprocess.CalledProcessError as exc:
            print(f"betterproto2: failed ({exc.stderr.strip().splitlines()[-1:]})")

    print(f"payload JSON {len(PAYLOAD)} B; median of 5 rounds")
    print(f"{'runtime':<14}{'wire B':>8}{'encode µs':>12}{'decode µs':>12}")
    base = results[0]
    for r in results:
        enc, dec = float(r["encode_us"]), float(r["decode_us"])  # type: ignore[arg-type]
        ratio = (
            f"  ({enc / float(base['encode_us']):.0f}x / "  # type: ignore[arg-type]
            f"{dec / float(base['decode_us']):.0f}x upb)"  # type: ignore[arg-type]
        )
        print(f"{r['runtime']!s:<14}{r['bytes']!s:>8}{enc:>12.2f}{dec:>12.2f}{ratio}")


if __name__ == "__main__":
    main()
