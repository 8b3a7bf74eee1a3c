"""Go vectors for the encodings both SDKs must share, produced by running Go (no control plane).

Each test runs the ``twin`` Go program on a table of inputs and compares bubu's answer with
Go's: the bytes ``encoding/json`` writes (which signal and effect summaries measure and hash,
docs/contract/signals.md#signals, docs/contract/signals.md#effects-ledger), ``strings.TrimSpace``
(effect and signal keys), and how the REST client reads ``BUBU_K8S_TIMEOUT``
(docs/contract/runtime-environment.md#kubernetes-client).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bubu._k8s import identity
from bubu._runtime import parse
from bubu._runtime.env import load_env
from bubu._runtime.sources import MappingSource
from bubu._signals import SignalEnvelope, SignalMeta, build_signal_values
from tests.interop._twins import ATOMS, corpus, go_twin


def go_bytes(value: Any) -> bytes:
    """What the SDK hashes for a value: Go's json.Marshal of it (identity.go_json)."""
    plain = msgspec.to_builtins(value, str_keys=True, order="deterministic")
    return identity.go_json(plain, sort_keys=False)


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
users: [{name: u, user: {token: t}}]
"""


@pytest.mark.interop
async def test_go_json_matches_encoding_json_over_the_corpus(go_bin: Path) -> None:
    values: list[Any] = [*corpus(16), *ATOMS, ATOMS]
    results = await go_twin(go_bin, [{"op": "marshal", "value": v} for v in values], env={})
    for value, result in zip(values, results, strict=True):
        assert result["ok"], result
        assert go_bytes(value).decode() == result["value"], value


def _envelopes() -> list[tuple[SignalEnvelope, dict[str, Any]]]:
    cases = [
        SignalEnvelope(),
        SignalEnvelope(meta=SignalMeta(format="text", size_bytes=3)),
        SignalEnvelope(
            meta=SignalMeta(
                format="json",
                content_type="text/html",
                size_bytes=1_000_000,
                hash_sha256="ab" * 32,
                attributes={"z": "<1>", "a": "\u2028"},
            ),
            sample={"text": "<b>& é", "truncated": True, "extra": [1.0, -0.0, 2**53 + 1]},
        ),
    ]
    return [(env, msgspec.to_builtins(env)) for env in cases]


@pytest.mark.interop
async def test_signal_envelopes_marshal_like_go_struct(go_bin: Path) -> None:
    cases = _envelopes()
    ops = [{"op": "marshal_envelope", "value": wire} for _, wire in cases]
    results = await go_twin(go_bin, ops, env={})
    for (env, _), result in zip(cases, results, strict=True):
        assert result["ok"], result
        assert go_bytes(env).decode() == result["value"]


@pytest.mark.interop
async def test_signal_summary_size_and_hash_are_over_go_bytes(go_bin: Path) -> None:
    # The known divergence: sizes and hashes used to be taken over msgspec's bytes, which
    # differ from Go's for HTML characters, U+2028, floats (1.0, 1e21, -0.0) and key order.
    values: list[Any] = [*corpus(8), *ATOMS[:18]]
    results = await go_twin(go_bin, [{"op": "marshal", "value": v} for v in values], env={})
    for value, result in zip(values, results, strict=True):
        written = result["value"].encode()
        _, event = build_signal_values("k", value, 1 << 20)
        assert event is not None
        assert event["sizeBytes"] == len(written), value
        assert event["sha256"] == hashlib.sha256(written).hexdigest(), value


@pytest.mark.interop
async def test_trim_space_matches_go_for_every_space_like_code_point(go_bin: Path) -> None:
    # Python's str.strip() also strips U+001C..U+001F, which Go's unicode.IsSpace does not:
    # effect keys such as "\x1ckey" must stay as Go stores them.
    points = [
        c
        for c in range(0x3001)
        if chr(c).isspace() or unicodedata.category(chr(c)) in ("Zs", "Zl", "Zp", "Cc")
    ] + [0x180E, 0x200B, 0xFEFF]
    texts = [f"{chr(c)}k{chr(c)}" for c in points]
    results = await go_twin(go_bin, [{"op": "trim_space", "text": t} for t in texts], env={})
    for text, result in zip(texts, results, strict=True):
        assert parse.go_trim_space(text) == result["value"], hex(ord(text[0]))


TIMEOUTS = [
    "",
    "5s",
    " 5s",
    "5s ",
    "\t5s",
    "1m30s",
    "-1s",
    "0",
    "0s",
    "abc",
    "1.5h",
    "5",
    "1e3s",
    "+5s",
    ".5s",
    "5.s",
    "1µs",
    "1us",
    "9223372036854775807ns",
    "9999999999h",
    "1h 2m",
    "300ms",
    "2h45m",
    "1h-2m",
]


@pytest.mark.interop
async def test_k8s_timeout_is_parsed_as_go_parses_it(go_bin: Path, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    for raw in TIMEOUTS:
        env = {"KUBECONFIG": str(kubeconfig), "BUBU_K8S_TIMEOUT": raw}
        [result] = await go_twin(go_bin, [{"op": "rest_config"}], env=env)
        assert result["ok"], result
        ours = load_env(MappingSource({"BUBU_K8S_TIMEOUT": raw})).k8s_timeout
        assert ours == result["value"]["timeoutNs"] / 1e9, f"BUBU_K8S_TIMEOUT={raw!r}"
        assert (result["value"]["qps"], result["value"]["burst"]) == (20, 40)


def test_corpus_is_plain_json() -> None:
    # The twins hand both SDKs these documents through JSON: they must survive it unchanged.
    for doc in corpus(16):
        assert json.loads(json.dumps(doc)) == doc
