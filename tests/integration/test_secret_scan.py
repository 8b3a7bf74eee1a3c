"""A secret never leaves the process, in any mode (issue 12 item 1, deliverable 6).

Each test runs an engram or impulse as a real process started the way a pod starts it
(``bubu.run(...)``, the env the real operator wrote into the pod template, the ServiceAccount it
made, its StepRun or Impulse, a real kube-apiserver, a loopback connector),
with an OpenTelemetry SDK exporting every span to a file. The code logs the secret (raw, in a
``repr``, inside JSON inside JSON), prints it, and puts it in an exception. Then everything the
process produced is scanned for every form of the secret: stdout, stderr, the status it wrote
(StepRun or Impulse) and the exported spans. Every log line must be JSON.

Before the shared start-up, streaming and impulse runs printed the secret in clear, in plain
text, and no mode masked its escaped forms.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest

import tests.conftest as _root_conftest
from bubu._runtime.messages import StreamMessage
from tests._controlplane import workloads
from tests.integration._stream_helpers import connector
from tests.integration.test_status import SR, read_step_run

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        engram_runner_identity,
        impulse_identity,
        k8s_namespace,
    )


ROOT = Path(__file__).resolve().parents[2]

SECRET = 'tok-"9Zq"\\leak-ünï-7'
"""Quote, backslash and non-ASCII: its JSON, repr and raw forms all differ."""

FORMS = {
    "raw": SECRET,
    "json": json.dumps(SECRET)[1:-1],
    "json-ascii": json.dumps(SECRET, ensure_ascii=True)[1:-1],
    "json-in-json": json.dumps(json.dumps(SECRET)[1:-1])[1:-1],
    "repr": repr(SECRET)[1:-1],
    "bytes-repr": repr(SECRET.encode())[2:-1],
    "core": "leak-",
}

PRELUDE = textwrap.dedent("""
    import asyncio, json, logging, os, sys
    import bubu
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class FileExporter(SpanExporter):
        def export(self, spans):
            with open(os.environ["SCAN_SPANS_FILE"], "a") as out:
                for span in spans:
                    out.write(span.to_json(indent=None) + "\\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    trace.set_tracer_provider(provider)
    log = logging.getLogger("leaky")

    def leak(token):
        log.warning("token %s", token)
        log.warning("secrets %r", {"api": token})
        log.warning("request %s", json.dumps({"body": json.dumps({"auth": token})}))
        print("stdout:", token, repr(token), json.dumps({"t": token}), flush=True)
        print("stderr:", token, file=sys.stderr, flush=True)
""")

BATCH = PRELUDE + textwrap.dedent("""
    class Leaky(bubu.BatchEngram[dict, dict]):
        async def init(self, config, secrets):
            self.token = secrets.get("api")

        async def process(self, ctx, inputs):
            leak(self.token)
            raise RuntimeError(f"request failed: {self.token!r} {json.dumps(self.token)}")

    bubu.run(bubu.start(Leaky()))
""")

STREAM = PRELUDE + textwrap.dedent("""
    class Leaky(bubu.StreamingEngram[dict]):
        async def init(self, config, secrets):
            self.token = secrets.get("api")
            if os.environ.get("SCAN_FAIL_INIT"):
                raise RuntimeError(f"cannot log in with {self.token!r}")

        async def stream(self, inbound):
            async for msg in inbound:
                leak(self.token)
                raise RuntimeError(f"request failed: {self.token!r}")
                yield msg

    bubu.run(bubu.start(Leaky()))
""")

IMPULSE = PRELUDE + textwrap.dedent("""
    class Leaky(bubu.Impulse[dict]):
        async def init(self, config, secrets):
            self.token = secrets.get("api")

        async def run(self, client):
            leak(self.token)
            raise RuntimeError(f"listener failed: {self.token!r}")

    bubu.run(bubu.run_impulse(Leaky()))
""")

DUAL = PRELUDE + textwrap.dedent("""
    class Leaky(bubu.BatchEngram[dict, dict], bubu.StreamingEngram[dict]):
        async def init(self, config, secrets):
            self.token = secrets.get("api")

        async def process(self, ctx, inputs):
            leak(self.token)
            return bubu.Result({"ok": True})

        async def stream(self, inbound):
            async for msg in inbound:
                yield msg

    bubu.run(bubu.start(Leaky()))
""")


async def start(script: str, tmp_path: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    path = tmp_path / "leaky.py"
    path.write_text(script)
    full = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    full.update(env)
    full.update(
        {"BUBU_SECRET_api": SECRET, "BUBU_DEBUG": "true", "SCAN_SPANS_FILE": str(tmp_path / "s")}
    )
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full,
        cwd=ROOT,
    )


async def finish(proc: asyncio.subprocess.Process) -> tuple[str, str]:
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    return out.decode(), err.decode()


def scan(tmp_path: Path, mode: str, **texts: str) -> str:
    """Assert no form of the secret in any text, and every log line is JSON; return the spans."""
    spans_file = tmp_path / "s"
    texts["spans"] = spans_file.read_text() if spans_file.exists() else ""
    for where, text in texts.items():
        for name, form in FORMS.items():
            assert form not in text, f"{name} form of the secret in {where}"
    for line in texts["stdout"].splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            assert entry["mode"] == mode, entry
        else:
            assert line.startswith("stdout: [REDACTED] '[REDACTED]'"), line
    for line in texts["stderr"].splitlines():
        assert line.startswith("stderr: [REDACTED]"), line
    assert "[REDACTED]" in texts["stdout"]
    return texts["spans"]


def pod_env(cp: Any, ns: str, kubeconfig: Any, **extra: str) -> dict[str, str]:
    """The operator's Job env for ``run-1-step-a`` (``engram_runner_identity``), and more."""
    values = workloads.pod_env(cp, ns, SR)
    values.update({"KUBECONFIG": str(kubeconfig), "BUBU_TRIGGER_DATA": "{}"})
    values.update(extra)
    return values


@pytest.mark.integration
async def test_batch_mode(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, tmp_path: Path
) -> None:
    env = pod_env(controlplane, k8s_namespace, engram_runner_identity.kubeconfig_path)
    out, err = await finish(await start(BATCH, tmp_path, env))
    obj = read_step_run(controlplane, k8s_namespace, SR)
    scan(tmp_path, "batch", stdout=out, stderr=err, status=msgspec.json.encode(obj).decode())
    assert obj["status"]["phase"] == "Failed"
    assert "'[REDACTED]'" in obj["status"]["lastFailureMsg"]
    assert "Traceback" in out  # BUBU_DEBUG: the traceback is logged, masked


@pytest.mark.integration
async def test_dual_mode_batch_then_bridge(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, tmp_path: Path
) -> None:
    conn = connector()
    async with conn:
        env = pod_env(
            controlplane,
            k8s_namespace,
            engram_runner_identity.kubeconfig_path,
            # what the operator writes for a step with a streaming successor
            **{**conn.binding_env(), "BUBU_EXECUTION_MODE": "hybrid", "BUBU_HYBRID_BRIDGE": "true"},
        )
        proc = await start(DUAL, tmp_path, env)
        forwarded = await conn.next_output(timeout=60)
        out, err = await finish(proc)
    assert proc.returncode == 0, err
    assert forwarded.json_data() == {"ok": True}
    obj = read_step_run(controlplane, k8s_namespace, SR)
    spans = scan(tmp_path, "hybrid", stdout=out, stderr=err, status=json.dumps(obj))
    assert obj["status"]["phase"] == "Succeeded"
    assert "TransportConnectorService/Data" in spans  # the bridge's client span was exported


@pytest.mark.loopback
@pytest.mark.parametrize("fail_init", [False, True], ids=["stream", "init"])
async def test_streaming_mode(tmp_path: Path, fail_init: bool) -> None:
    conn = connector()
    async with conn:
        env = {**conn.binding_env()}
        if fail_init:
            env["SCAN_FAIL_INIT"] = "1"
        proc = await start(STREAM, tmp_path, env)
        if not fail_init:
            await conn.wait_ready(timeout=30)
            await conn.send(StreamMessage.json({"go": 1}))
            # The engram raised: in a pod the session ends and the connector redelivers.
            await conn.wait_until(lambda: conn.stats.data_sessions >= 2, timeout=30)
            proc.send_signal(signal.SIGTERM)
        out, err = await finish(proc)
    spans = scan(tmp_path, "streaming", stdout=out, stderr=err)
    if fail_init:
        assert proc.returncode == 1
        assert "unhandled error in the entry point" in out and "Traceback" in out
    else:
        assert proc.returncode == 0, err
        assert "engram stream failed" in out
        assert "TransportConnectorService/Control" in spans


@pytest.mark.integration
async def test_impulse_mode(
    controlplane: Any, k8s_namespace: str, impulse_identity: Any, admin_kube: Any, tmp_path: Path
) -> None:
    env = {
        "BUBU_IMPULSE_NAME": "hook",
        "BUBU_IMPULSE_NAMESPACE": k8s_namespace,
        "BUBU_TARGET_STORY_NAME": "story",
        "BUBU_TARGET_STORY_NAMESPACE": k8s_namespace,
        "KUBECONFIG": str(impulse_identity.kubeconfig_path),
    }
    proc = await start(IMPULSE, tmp_path, env)
    out, err = await finish(proc)
    assert proc.returncode == 1, err
    from bubu._k8s.resources import IMPULSE as IMPULSE_KIND

    obj = await admin_kube.get(IMPULSE_KIND, "hook")
    scan(tmp_path, "impulse", stdout=out, stderr=err, status=json.dumps(obj))
    assert "impulse execution failed: listener failed: '[REDACTED]'" in out
