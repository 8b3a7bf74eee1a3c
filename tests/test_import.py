"""``import bubu`` (and the pytest plugin every bubu user loads) stay light.

See docs/contract/design.md#cheap-import.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import site
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HEAVY = (
    "kr8s",
    "grpclib",
    "h2",
    "google.protobuf",
    "opentelemetry",
    "httpx",
    # the bubu[s3] extra: only an s3 store may load it
    "obstore",
    "aiobotocore",
    "botocore",
)
S3_CLIENT = ("obstore", "aiobotocore", "botocore")


def loaded_after(statement: str) -> list[str]:
    code = (
        f"import sys, json\n{statement}\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if any(m == h or m.startswith(h + '.') for h in heavy))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(out.stdout))


@pytest.mark.parametrize(
    "statement",
    [
        "import bubu",
        "import bubu.testkit.pytest_plugin",
        "import bubu; bubu.BatchEngram; bubu.Result; bubu.ExecutionContext",
        "import bubu._cli",
    ],
)
def test_import_does_not_load_heavy_modules(statement: str) -> None:
    assert loaded_after(statement) == []


def test_entry_point_attribute_loads_lazily() -> None:
    # bubu.start_batch resolves through PEP 562 without pulling in the Kubernetes client.
    assert loaded_after("import bubu; bubu.start_batch; bubu.run; bubu.start") == []


def test_local_batch_run_loads_no_platform_client() -> None:
    # `bubu run` of a batch engram (no StepRun) needs neither the Kubernetes client nor gRPC
    # nor OpenTelemetry: loading them would cost the hello benchmark most of its budget.
    hello = Path(__file__).resolve().parents[1] / "examples" / "hello.py"
    statement = (
        "import contextlib, io\n"
        "from bubu._cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    code = main(['run', {str(hello)!r}, '--inputs', '{{\"name\": \"Ada\"}}'])\n"
        'assert code == 0 and out.getvalue().strip() == \'{"greeting": "Hello, Ada!"}\', code'
    )
    assert loaded_after(statement) == []


def test_storage_without_s3_loads_no_s3_client(tmp_path: Path) -> None:
    # A batch engram with file storage (or none) hydrates and offloads without the S3 client.
    statement = (
        "import asyncio\n"
        "from bubu._storage.manager import StorageManager\n"
        "from bubu._storage.store import FileStore\n"
        "from bubu import _logs\n"
        f"m = StorageManager(FileStore({str(tmp_path)!r}), max_inline_size=8)\n"
        "ref = asyncio.run(m.dehydrate({'a': 'x' * 64}, 'ns/step'))\n"
        "assert asyncio.run(m.hydrate(ref)) == {'a': 'x' * 64}\n"
        "asyncio.run(StorageManager(None).hydrate({'a': 1}))"
    )
    assert [m for m in loaded_after(statement) if m.split(".")[0] in S3_CLIENT] == []


def test_an_s3_store_does_load_its_client() -> None:
    pytest.importorskip("obstore")
    statement = (
        "from bubu._runtime.env import load_env\n"
        "from bubu._runtime.sources import MappingSource\n"
        "from bubu._storage.manager import StorageManager\n"
        "StorageManager.from_env(load_env(MappingSource({'BUBU_STORAGE_PROVIDER': 's3', "
        "'BUBU_STORAGE_S3_BUCKET': 'b', 'BUBU_STORAGE_S3_ENDPOINT': 'http://127.0.0.1:9'})))"
    )
    assert "obstore" in loaded_after(statement)


PAYLOAD_LAYERS = ("bubu._storage", "bubu._templating", "bubu._schema", "jsonschema_rs", "obstore")


@pytest.mark.parametrize(
    "env",
    [{}, {"BUBU_STORAGE_PROVIDER": "file", "BUBU_STORAGE_PATH": "{tmp}"}],
    ids=["storage-off", "file-storage"],
)
def test_batch_without_refs_or_templates_loads_no_payload_layer(
    env: dict[str, str], tmp_path: Path
) -> None:
    # A step whose inputs, config and output hold no reference and no template pays for
    # neither storage nor templates nor schemas: not even their imports (bubu._payloads).
    hello = Path(__file__).resolve().parents[1] / "examples" / "hello.py"
    values = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    code = (
        "import contextlib, io, json, os, sys\n"
        f"os.environ.update({values!r})\n"
        "from bubu._cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    code = main(['run', {str(hello)!r}, '--inputs', '{{\"name\": \"Ada\"}}'])\n"
        "assert code == 0, code\n"
        f"layers = {PAYLOAD_LAYERS!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if any(m == h or m.startswith(h + '.') for h in layers))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


#: What a streaming engram must not load on its way to the handshake (docs/performance.md,
#: spawn-to-handshake): OpenTelemetry when nothing configures it, protovalidate (only to name a
#: broken rule), package metadata, the platform and payload layers a plain echo never uses (no
#: config: nothing to hydrate), and ``random`` (only a redial or a reconnect draws a jitter).
REPO = str(Path(__file__).resolve().parents[1])

STREAMING_START_HEAVY = (
    "opentelemetry",
    "protovalidate",
    "importlib.metadata",
    "kr8s",
    "httpx",
    "bubu._k8s",
    "bubu._logs",
    "bubu._payloads",
    "bubu._storage",
    "bubu._templating",
    "bubu._schema",
    "obstore",
    "random",
)

#: The functions that draw a redial's jitter (bubu/_transport/channel.py, bubu/_streaming.py).
_REDIAL = re.compile(r"in (_dial_backoff|jitter_delay)\n")


def _read_if_written(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return ""


# The engram records sys.modules when its stream starts: the connector has both streams by then
# (the session runs the engram after opening Data and Control), so this is everything the
# handshake loaded after the interpreter's own start. Its stream then ends, which ends the run
# with exit code 0.
STREAMING_PROBE = """
import os, sys, traceback
# what the interpreter loaded before bubu
before = set(sys.modules)

class WhoImports:
    # records the stack that first imports `random`, so a failure names its importer
    def find_spec(self, name, path=None, target=None):
        if name == "random" and "random" not in sys.modules:
            with open(os.environ["PROBE_OUT"] + ".random", "w") as fh:
                fh.write("".join(traceback.format_stack()))
        return None

sys.meta_path.insert(0, WhoImports())
import bubu

class Probe(bubu.StreamingEngram):
    async def stream(self, inbound):
        with open(os.environ["PROBE_OUT"], "w") as fh:
            fh.write("\\n".join(sorted(set(sys.modules) - before)))
        return
        yield

bubu.run(bubu.start_streaming(Probe()))
"""


@pytest.mark.loopback
@pytest.mark.parametrize(
    ("otel_env", "loads_otel"),
    [({}, False), ({"OTEL_PROPAGATORS": "tracecontext,baggage"}, True)],
    ids=["otel-unconfigured", "otel-propagators-configured"],
)
async def test_streaming_engram_reaches_its_handshake_without_heavy_modules(
    otel_env: dict[str, str], loads_otel: bool, tmp_path: Path
) -> None:
    from tests.integration._stream_helpers import connector

    out = tmp_path / "modules.txt"
    async with connector() as conn:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("BUBU_", "OTEL_", "PYTHON"))
        }
        env.update(**conn.binding_env(), **otel_env, PROBE_OUT=str(out))
        # -S with the package directories on the path, as in a container image: without this
        # machine's site hooks (a CA injection here imports tempfile, hence random)
        env["PYTHONPATH"] = os.pathsep.join([REPO, *site.getsitepackages()])
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-S",
            "-c",
            STREAMING_PROBE,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, output.decode(errors="replace")[-3000:]
    modules = out.read_text().split()
    assert "bubu._transport.session" in modules  # it did get to a session
    heavy = sorted(
        m for m in modules if any(m == h or m.startswith(h + ".") for h in STREAMING_START_HEAVY)
    )
    importer = _read_if_written(f"{out}.random")
    if "random" in heavy and _REDIAL.search(importer):
        # A redial (a refused dial or a failed first session, as on a loaded CI machine) draws
        # its jitter: that path may load `random`, the straight road to the handshake may not.
        heavy.remove("random")
    if loads_otel:
        # configured propagators are honoured: the call spans load OpenTelemetry as before
        # (and its entry points, importlib.metadata)
        assert "opentelemetry.propagate" in heavy, heavy
    else:
        assert heavy == [], f"{importer}\n{output.decode(errors='replace')[-3000:]}"


@pytest.mark.parametrize(
    ("setup", "env", "expected"),
    [
        # nothing could make a span or a header: no span, no header, no import
        ("", {}, [False, False, [], False]),
        # a provider named by the environment: a real span, its context in the headers
        (
            "",
            {"OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"},
            [True, True, ["traceparent"], True],
        ),
        # propagators named by the environment, or OpenTelemetry already loaded: the OTel path
        ("", {"OTEL_PROPAGATORS": "tracecontext"}, [True, True, [], True]),
        ("import opentelemetry.context", {}, [True, True, [], True]),
    ],
    ids=["untouched", "provider-env", "propagators-env", "imported"],
)
def test_call_spans_skip_opentelemetry_only_when_nothing_could_use_it(
    setup: str, env: dict[str, str], expected: list[Any]
) -> None:
    code = (
        f"import json, sys\n{setup}\n"
        "from bubu import _telemetry\n"
        "in_use = _telemetry.otel_in_use()\n"
        "headers = {}\n"
        "with _telemetry.rpc_span('/transport.v1.TransportConnectorService/Data', headers) as s:\n"
        "    pass\n"
        "print(json.dumps([in_use, s is not None, sorted(headers), "
        "'opentelemetry.propagate' in sys.modules]))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**clean, **env},
    )
    assert json.loads(out.stdout) == expected


def test_packet_trace_context_imports_nothing_until_opentelemetry_is_loaded() -> None:
    # inject_w3c runs for every outbound packet: with OpenTelemetry not loaded no context can be
    # active, so it writes nothing and loads nothing; once it is loaded, an active span is written.
    code = (
        "import json, sys\n"
        "from bubu import _telemetry\n"
        "before = {}\n"
        "_telemetry.inject_w3c(before)\n"
        "loaded = 'opentelemetry.context' in sys.modules\n"
        "from opentelemetry import trace\n"
        "ctx = trace.SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB9C7C989F97918E1, False, "
        "trace.TraceFlags(1))\n"
        "after = {}\n"
        "with trace.use_span(trace.NonRecordingSpan(ctx)):\n"
        "    _telemetry.inject_w3c(after)\n"
        "print(json.dumps([before, loaded, after]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == [
        {},
        False,
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"},
    ]
