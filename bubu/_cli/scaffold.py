"""``bubu init``: scaffold a component project whose tests pass as generated.

``bubu init NAME --kind batch|streaming|impulse [--dir DIR]`` writes, into ``DIR`` (default:
``./NAME``):

* ``<module>.py``: the component, with typed config/inputs/output (msgspec Structs);
* ``test_<module>.py``: pytest tests through the bubu fixtures (async, no configuration), one of
  which runs ``bubu check`` so the template cannot drift from the code;
* ``Engram.yaml`` or ``Impulse.yaml``: the template, its schemas generated from the module;
* ``Dockerfile``, ``requirements.txt`` and ``README.md``.

Existing files are never overwritten unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import keyword
import re
from pathlib import Path
from typing import Final

from bubu._cli import UsageError
from bubu._cli.term import Term

__all__ = ["add_init_arguments", "cmd_init", "scaffold"]

KINDS: Final = ("batch", "streaming", "impulse")

_BATCH: Final = '''"""{title}: a batch engram (one run per StepRun, as a Kubernetes Job).

Run it locally (no cluster):  bubu run {module}.py --inputs '{{"name": "Ada"}}'
Test it:                      pytest
Keep the template in step:    bubu check {module}.py
"""

from __future__ import annotations

from typing import Annotated

import msgspec

import bubu


class Config(msgspec.Struct):
    """The step's configuration: the with block of the Engram."""

    greeting: Annotated[str, msgspec.Meta(description="How to greet")] = "Hello"


class Inputs(msgspec.Struct):
    """The step's inputs."""

    name: Annotated[str, msgspec.Meta(min_length=1, description="Who to greet")]


class Output(msgspec.Struct):
    """The step's output: status.output of the StepRun."""

    greeting: str


class {cls}(bubu.BatchEngram[Config, Inputs]):
    """Greets someone."""

    output_type = Output

    async def init(self, config: Config, secrets: bubu.Secrets) -> None:
        self.config = config

    async def process(self, ctx: bubu.ExecutionContext, inputs: Inputs) -> bubu.Result:
        ctx.logger.info("greeting %s", inputs.name)
        return bubu.Result(Output(greeting=f"{{self.config.greeting}}, {{inputs.name}}!"))


if __name__ == "__main__":
    bubu.run(bubu.start_batch({cls}()))
'''

_BATCH_TEST: Final = '''"""Tests for {module}: the engram runs through bubu's batch lifecycle."""

import subprocess
import sys
from pathlib import Path

import pytest
from {module} import Config, Output, {cls}

from bubu.errors import SchemaValidationError


async def test_greets_with_the_configured_greeting(bubu_batch_harness):
    config = Config(greeting="Hi")
    harness = bubu_batch_harness(engram={cls}(), config=config, inputs={{"name": "Ada"}})
    result = await harness.run()
    assert result.data == Output(greeting="Hi, Ada!")
    assert harness.status["phase"] == "Succeeded"


async def test_a_missing_name_is_a_validation_error(bubu_batch_harness):
    with pytest.raises(SchemaValidationError) as failure:
        await bubu_batch_harness(engram={cls}(), inputs={{}}).run()
    assert "name" in str(failure.value)


def test_the_template_matches_the_code():
    here = Path(__file__).parent
    check = [sys.executable, "-m", "bubu", "check", str(here / "{module}.py")]
    proc = subprocess.run(check, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
'''

_STREAM: Final = '''"""{title}: a streaming engram (a Deployment that reads and writes messages).

Run it locally on JSON lines:  echo '{{"text": "hi"}}' | bubu run --stream {module}.py
Test it:                       pytest
Keep the template in step:     bubu check {module}.py
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec

import bubu

log = logging.getLogger("{module}")


class Config(msgspec.Struct):
    """The engram's configuration: the with block of the Engram."""

    prefix: Annotated[str, msgspec.Meta(description="Put before every reply")] = ">"


class Message(msgspec.Struct):
    """An inbound JSON message."""

    text: str


class Reply(msgspec.Struct):
    """An outbound JSON message."""

    text: str


class {cls}(bubu.StreamingEngram[Config]):
    """Replies to every message with its text, prefixed."""

    inputs_type = Message
    output_type = Reply

    async def init(self, config: Config, secrets: bubu.Secrets) -> None:
        self.prefix = config.prefix

    async def stream(
        self, inbound: AsyncIterator[bubu.InboundMessage]
    ) -> AsyncIterator[bubu.StreamMessage]:
        async for msg in inbound:
            # done() when the block ends; if it raised, the message would be redelivered.
            async with msg:
                try:
                    message = msg.json_data(Message)
                except bubu.errors.ProtocolViolationError as exc:
                    # Retrying cannot fix a malformed message: settle it and move on.
                    log.warning("dropping a message: %s", exc)
                    raise bubu.Drop() from None
                yield bubu.StreamMessage.json(
                    Reply(text=f"{{self.prefix}} {{message.text}}"), metadata=msg.metadata
                )


if __name__ == "__main__":
    bubu.run(bubu.start_streaming({cls}()))
'''

_STREAM_TEST: Final = '''"""Tests for {module}: the engram streams in memory."""

import subprocess
import sys
from pathlib import Path

import bubu

from {module} import Config, {cls}


async def test_replies_to_each_message_and_acknowledges_it(bubu_stream_harness):
    inputs = [bubu.StreamMessage.json({{"text": "hi"}}), bubu.StreamMessage.json({{"text": "yo"}})]
    harness = bubu_stream_harness(engram={cls}(), config=Config(prefix="#"), inputs=inputs)
    outputs = await harness.run()
    assert [m.json_data() for m in outputs] == [{{"text": "# hi"}}, {{"text": "# yo"}}]
    assert harness.done_count == 2 and not harness.undone


async def test_a_message_of_the_wrong_shape_is_dropped_not_retried(bubu_stream_harness):
    wrong = bubu.StreamMessage.json({{"n": 1}})
    harness = bubu_stream_harness(engram={cls}(), inputs=[wrong])
    assert await harness.run() == []
    assert harness.done_count == 1


def test_the_template_matches_the_code():
    here = Path(__file__).parent
    check = [sys.executable, "-m", "bubu", "check", str(here / "{module}.py")]
    proc = subprocess.run(check, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
'''

_IMPULSE: Final = '''"""{title}: an impulse (a Deployment that starts Stories from events).

This one is a timer: every ``interval`` seconds it starts the Impulse's target Story. The trigger
token is the tick's slot (``<name>-<slot>``), so a restarted pod that fires the same tick again
maps to the same StoryTrigger and StoryRun instead of a duplicate.

Run it locally (in-memory cluster, each trigger printed):
    bubu run {module}.py --config '{{"interval": 1, "count": 3}}'
Test it:                    pytest
Keep the template in step:  bubu check {module}.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import msgspec

import bubu


class Config(msgspec.Struct):
    """The impulse's configuration: the with block of the Impulse."""

    interval: Annotated[float, msgspec.Meta(gt=0, description="Seconds between ticks")] = 60.0
    count: Annotated[int, msgspec.Meta(ge=0, description="Stop after this many; 0: never")] = 0
    name: Annotated[str, msgspec.Meta(description="Prefix of the trigger tokens")] = "{name}"


class {cls}(bubu.Impulse[Config]):
    """Starts the target Story on a fixed interval."""

    async def init(self, config: Config, secrets: bubu.Secrets) -> None:
        self.config = config

    async def run(self, client: Any) -> None:
        target = bubu.get_target_story()
        fired = 0
        while True:
            slot = int(time.time() // self.config.interval)
            await bubu.start_story_with_token(
                target.name,
                token=f"{{self.config.name}}-{{slot}}",
                inputs={{"slot": slot, "firedAt": slot * self.config.interval}},
            )
            fired += 1
            if self.config.count and fired >= self.config.count:
                return
            next_tick = (slot + 1) * self.config.interval
            await asyncio.sleep(max(0.0, next_tick - time.time()))


if __name__ == "__main__":
    bubu.run(bubu.run_impulse({cls}()))
'''

_IMPULSE_TEST: Final = '''"""Tests for {module}: the impulse runs against an in-memory cluster."""

import subprocess
import sys
from pathlib import Path

from {module} import Config, {cls}


async def test_each_tick_starts_one_story_run(bubu_impulse_harness):
    harness = bubu_impulse_harness(impulse={cls}(), config=Config(interval=0.05, count=2))
    assert await harness.run() == 0
    assert [decision for _, decision, _ in harness.decisions] == ["Created", "Created"]
    assert len(harness.story_runs) == 2


async def test_a_restart_in_the_same_tick_adds_no_run(bubu_impulse_harness, bubu_fake_cluster):
    # The same slot gives the same token, so the restarted impulse finds the first trigger.
    config = Config(interval=3600, count=1)
    first = bubu_impulse_harness(impulse={cls}(), config=config, cluster=bubu_fake_cluster)
    assert await first.run() == 0
    again = bubu_impulse_harness(impulse={cls}(), config=config, cluster=bubu_fake_cluster)
    assert await again.run() == 0
    assert len(again.triggers) == 1
    assert len(again.story_runs) == 1


def test_the_template_matches_the_code():
    here = Path(__file__).parent
    check = [sys.executable, "-m", "bubu", "check", str(here / "{module}.py")]
    proc = subprocess.run(check, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
'''

_DOCKERFILE: Final = """# The {kind_name} image (the operator sets the {run}'s BUBU_* variables).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY {module}.py .
# Any non-root user works; the pod needs no write access to the image.
USER 65532:65532
CMD ["python", "{module}.py"]
"""

_README: Final = """# {name}

A {kind_name} written with [bubu](https://pypi.org/project/bubu/), the Python SDK of BubuStack.

```sh
pip install "bubu[testing]"
pytest                                  # the tests in test_{module}.py
{run_cmd}
bubu check {module}.py                  # the template matches the code
docker build -t {name}:0.1.0 .
```

`{template}` is the {template_kind} to apply to the cluster; regenerate its schemas after
changing the types with `bubu schema {module}.py --write {template}`.
"""


def _names(raw: str) -> tuple[str, str, str]:
    """Return (dns name, module name, class name) for a project name such as ``my-filter``."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", raw) if w]
    if not words or not words[0][0].isalpha():
        raise UsageError(f"init: {raw!r}: the name must start with a letter (e.g. my-filter)")
    dns = "-".join(w.lower() for w in words)
    module = "_".join(w.lower() for w in words)
    cls = "".join(w[:1].upper() + w[1:] for w in words)
    if keyword.iskeyword(module) or module in ("bubu", "msgspec", "test"):
        raise UsageError(f"init: {raw!r} would shadow a Python module; pick another name")
    if len(dns) > 63:
        raise UsageError(f"init: {raw!r}: at most 63 characters (a Kubernetes name)")
    return dns, module, cls


def scaffold(name: str, kind: str, directory: Path, *, force: bool = False) -> list[Path]:
    """Write the project files and return their paths (the template is generated last).

    Raises:
        UsageError: a bad name or kind, or a file exists and ``force`` is false.
    """
    if kind not in KINDS:
        raise UsageError(f"init: --kind must be one of {', '.join(KINDS)}")
    dns, module, cls = _names(name)
    title = dns
    source, test = {
        "batch": (_BATCH, _BATCH_TEST),
        "streaming": (_STREAM, _STREAM_TEST),
        "impulse": (_IMPULSE, _IMPULSE_TEST),
    }[kind]
    template = "Impulse.yaml" if kind == "impulse" else "Engram.yaml"
    kind_name = {"batch": "batch engram", "streaming": "streaming engram", "impulse": "impulse"}[
        kind
    ]
    run_cmd = {
        "batch": f'bubu run {module}.py --inputs \'{{"name": "Ada"}}\'',
        "streaming": f'echo \'{{"text": "hi"}}\' | bubu run --stream {module}.py',
        "impulse": f'bubu run {module}.py --config \'{{"interval": 1, "count": 3}}\'',
    }[kind]
    fields = {"title": title, "module": module, "cls": cls, "name": dns}
    files = {
        f"{module}.py": source.format(**fields),
        f"test_{module}.py": test.format(**fields),
        "requirements.txt": "bubu\n",
        "Dockerfile": _DOCKERFILE.format(
            kind_name=kind_name,
            module=module,
            run="StepRun" if kind == "batch" else "Deployment",
        ),
        "README.md": _README.format(
            name=dns,
            module=module,
            kind_name=kind_name,
            run_cmd=run_cmd,
            template=template,
            template_kind="ImpulseTemplate" if kind == "impulse" else "EngramTemplate",
        ),
    }
    targets = [directory / f for f in [*files, template]]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        listed = ", ".join(str(p) for p in existing)
        raise UsageError(f"init: {listed} already exist(s); use --force to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for filename, text in files.items():
        path = directory / filename
        path.write_text(text, encoding="utf-8")
        written.append(path)
    written.append(_write_template(directory / f"{module}.py", directory / template, dns))
    return written


def _write_template(module_path: Path, path: Path, name: str) -> Path:
    from bubu._cli.components import load_component
    from bubu._cli.template import _dump, template_document

    component = load_component(str(module_path))
    doc = template_document(component, name=name)
    path.write_text(_dump(doc, "yaml"), encoding="utf-8")
    return path


def add_init_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bubu init``."""
    parser.add_argument("name", help="the component's name, e.g. my-filter")
    parser.add_argument("--kind", choices=KINDS, default="batch", help="what to scaffold")
    parser.add_argument("--dir", help="where to write (default: ./NAME)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def cmd_init(args: argparse.Namespace) -> int:
    """Run ``bubu init``."""
    directory = Path(args.dir) if args.dir else Path(args.name)
    term = Term()
    term.progress(f"scaffolding a {args.kind} component in {directory}/")
    written = scaffold(args.name, args.kind, directory, force=args.force)
    for path in written:
        term.ok(f"wrote {path}")
    term.line(f'next: cd {directory} && pytest   (needs: pip install "bubu[testing]")')
    return 0
