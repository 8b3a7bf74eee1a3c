"""``bubu run``: pick the runner from the component's kind, and run impulses locally.

``choose_runner`` looks at what the target defines before anything runs, so misuse gets the fix
instead of a confusing failure: a streaming engram without ``--stream`` is told to add it, a
batch engram or an impulse with ``--stream`` to drop it, and an option the chosen mode cannot
honour is refused rather than ignored (``--inputs`` and ``--timeout`` with ``--stream``,
``--inputs`` for an impulse).

``run_impulse`` runs an Impulse with the production lifecycle (``run_impulse`` through
``ImpulseHarness``) against the in-memory cluster of the testkit, with the operator stand-ins
deciding each StoryTrigger. Every StoryTrigger, decision and stop request is printed on stdout as
it happens, one line each (coloured on a terminal). Ctrl-C (or ``--timeout``) stops the impulse
as SIGTERM would; the exit code is the impulse's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from bubu._cli import UsageError, _load_module, _parse_timeout, _split_target, load_json_arg
from bubu._cli.components import Component, load_component
from bubu._cli.term import Term

__all__ = ["choose_runner", "run_impulse"]

_RUNNER = {"batch": "batch", "streaming": "stream", "impulse": "impulse"}
"""RUNNERS key by kind; a dual-mode engram runs as batch, or as a stream with --stream."""


def _kind_of(args: argparse.Namespace) -> Component | None:
    """The component ``bubu run`` will run, or None when the runner must decide (several)."""
    path, selector = _split_target(args.target)
    if selector is None:
        from bubu._cli.components import candidates

        module = _load_module(path)
        if not any(hasattr(module, attr) for attr in ("engram", "Engram")):
            found = [Component(c, _path(path)) for c in candidates(module)]
            if len({c.kind for c in found}) != 1:
                return None  # none or a mix: the runner names them (or picks by --stream)
            # Several of one kind: the kind decides the runner, which asks for a selector.
            return found[0]
    return load_component(args.target)


def _path(path: str) -> Any:
    from pathlib import Path

    return Path(path)


def choose_runner(args: argparse.Namespace) -> str:
    """Return the ``RUNNERS`` key for ``args``.

    Raises:
        UsageError: the mode and the component, or an option and the mode, do not fit.
    """
    stream = bool(getattr(args, "stream", False))
    component = _kind_of(args)
    if component is None:
        return "stream" if stream else "batch"
    target = args.target
    if component.kind == "streaming" and not stream:
        raise UsageError(
            f"{target}: {component.described} reads a stream of messages; run it with --stream "
            f"(JSON lines on stdin in, its messages out), e.g.\n"
            f'  echo \'{{"text": "hi"}}\' | bubu run --stream {target}'
        )
    if component.kind == "dual":
        component.kind = "streaming" if stream else "batch"
    if component.kind != "streaming" and stream:
        hint = "pass its inputs with --inputs" if component.kind == "batch" else "send it events"
        raise UsageError(f"{target}: {component.described}; drop --stream and {hint}")
    if stream:
        if args.inputs is not None:
            raise UsageError(
                "--inputs is for batch engrams; with --stream, send each input as a JSON line "
                "on stdin"
            )
        if args.timeout is not None:
            raise UsageError(
                "--timeout is the batch step timeout (BUBU_STEP_TIMEOUT); a --stream run ends "
                "when stdin ends or on Ctrl-C"
            )
    if component.kind != "impulse":
        where = "an in-process connector" if stream else "an in-memory StepRun"
        Term().progress(f"running {component.described} locally, against {where}")
    if component.kind == "impulse" and args.inputs is not None:
        raise UsageError(
            "--inputs: an impulse has no inputs (it starts Stories from the events it receives); "
            "configure it with --config"
        )
    return _RUNNER[component.kind]


class _Printer:
    """Prints the StoryTriggers, decisions and stop requests the fake cluster sees."""

    def __init__(self, term: Term) -> None:
        self.term = term
        self.decided: set[str] = set()
        self.stopped: set[str] = set()

    def __call__(self, event: str, kind: Any, obj: dict[str, Any]) -> None:
        from bubu._k8s.resources import STORY_RUN, STORY_TRIGGER

        meta = obj.get("metadata") or {}
        name = meta.get("name", "?")
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        style = self.term.style
        if kind == STORY_TRIGGER and event == "ADDED":
            identity = spec.get("deliveryIdentity") or {}
            mode = identity.get("mode") or "none"
            ident = f" {mode}={identity.get('key')}" if identity.get("key") else f" mode={mode}"
            story = (spec.get("storyRef") or {}).get("name", "?")
            inputs = json.dumps(spec.get("inputs") or {}, ensure_ascii=False, sort_keys=True)
            self.term.line(
                f"{style('trigger', 'bold', 'blue')}  {name} story={story}{ident} inputs={inputs}"
            )
        elif kind == STORY_TRIGGER and status.get("decision") and name not in self.decided:
            self.decided.add(name)
            decision = status["decision"]
            colour = {"Created": "green", "Reused": "yellow"}.get(decision, "red")
            run = (status.get("storyRunRef") or {}).get("name")
            detail = f" storyRun={run}" if run else ""
            reason = f" reason={status.get('reason')}" if status.get("reason") else ""
            message = f" message={status['message']!r}" if decision == "Rejected" else ""
            self.term.line(
                f"{style('decision', 'bold', colour)} {name} {style(decision, colour)}"
                f"{detail}{reason}{message}"
            )
        elif kind == STORY_RUN and spec.get("cancelRequested") and name not in self.stopped:
            self.stopped.add(name)
            self.term.line(f"{style('stop', 'bold', 'yellow')}     storyRun={name}")


def run_impulse(args: argparse.Namespace) -> int:
    """Run an impulse against the in-memory cluster; return its exit code."""
    from bubu._cli import _parse_secrets, keep_engram_logs
    from bubu._startup import run_process

    component = load_component(args.target)
    config = load_json_arg("--config", args.config)
    secrets = _parse_secrets(args.secret or [])
    timeout = _parse_timeout(args.timeout)
    keep_engram_logs(args)
    err = Term()
    try:
        impulse = component.cls()
    except TypeError as exc:
        raise UsageError(f"cannot create {component.name}(): {exc}") from None
    from bubu._runtime.env import load_identity

    story = load_identity().target_story_name or "story"
    err.progress(
        f"running {component.described} against an in-memory cluster (target Story {story!r}); "
        "Ctrl-C stops it"
    )
    from bubu._cli import report_storage, storage_settings

    storage_env = {k: v for k, v in os.environ.items() if k.startswith("BUBU_STORAGE_")}
    made = storage_settings(args, storage_env)
    options = _Options(
        config=config,
        secrets=secrets,
        deadline=timeout,
        story=story,
        storage=storage_env if storage_env else False,
    )
    # The start-up every run shares (bubu._startup): JSON logs on stderr (the SDK's only with
    # --verbose), secrets masked in logs, stdout, stderr and tracebacks.
    try:
        return run_process(
            # stdout is read inside the start-up's guard, so the trigger lines are masked too.
            lambda: _run(impulse, options, Term(_stdout()), err),
            debug=bool(args.debug),
            log_stream=sys.stderr,
            secret_values=secrets.values(),
            log_level=None if (args.verbose or args.debug) else logging.WARNING,
        )
    finally:
        report_storage(made)


def _stdout() -> Any:
    return sys.stdout


@dataclass
class _Options:
    config: dict[str, Any]
    secrets: dict[str, str]
    deadline: str | None
    story: str
    storage: dict[str, str] | bool = False


async def _run(impulse: Any, options: _Options, out: Term, err: Term) -> int:
    from bubu._runtime.parse import parse_go_duration
    from bubu.testkit._impulse import ImpulseHarness

    env = {k: v for k, v in os.environ.items() if k.startswith("BUBU_TRIGGER_")}
    harness = ImpulseHarness(
        impulse=impulse,
        config=options.config,
        secrets=options.secrets,
        env=env,
        story=options.story,
        stats_interval=1.0,
        storage=options.storage,
    )
    timeout = options.deadline
    harness.cluster.add_hook(_Printer(out))
    loop = asyncio.get_running_loop()
    stops = 0

    def on_signal() -> None:
        nonlocal stops
        stops += 1
        if stops == 1:
            err.progress("stopping (Ctrl-C again to abort)")
            harness.shutdown.request("SIGINT")
        elif harness._task is not None:
            harness._task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        try:
            await harness.start()
        except RuntimeError as exc:
            err.bad(str(exc))
            return harness.exit_code or 1
        if timeout is None:
            code = await harness.wait()
        else:
            try:
                code = await asyncio.wait_for(
                    asyncio.shield(harness.wait()), parse_go_duration(timeout)
                )
            except TimeoutError:
                err.progress(f"--timeout {timeout} reached; stopping")
                code = await harness.stop("timeout")
    except asyncio.CancelledError:
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    created = sum(1 for _, decision, _ in harness.decisions if decision == "Created")
    summary = f"{len(harness.triggers)} trigger(s), {created} StoryRun(s) created"
    if code == 0:
        err.ok(f"impulse ended: {summary}")
    else:
        err.bad(f"impulse exited with code {code}: {summary}")
    return code
