"""The ``bubu`` command: run an engram locally with the production lifecycle (argparse only).

``bubu run path/to/engram.py[:Name] --inputs JSON|@file --config JSON|@file --secret k=v``
loads the module, finds the engram, runs ``start_batch`` with an in-memory StepRun (no
cluster), prints ``status.output`` as JSON on stdout and exits with the production exit code
(0 success, 1 failure, 124 timeout, 130 after Ctrl-C). It owns the process exactly as
``bubu.run`` does (``bubu._startup.run_process``: signals, JSON logs, secrets masked in logs,
stdout, stderr and tracebacks), except that logs go to stderr, so stdout stays machine-readable.

Bad input is one line on stderr (``bubu: --inputs: invalid JSON at line 1 column 5: ...``) and
exit code 2; nothing prints a traceback unless ``--debug``.

Subcommands live in ``COMMANDS`` (name -> (add_arguments, handler)); ``bubu run`` picks its
runner from ``RUNNERS`` (``"batch"``, and ``"stream"`` with ``--stream``, in ``stream.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

__all__ = [
    "COMMANDS",
    "RUNNERS",
    "UsageError",
    "find_engram",
    "keep_engram_logs",
    "load_json_arg",
    "main",
    "report_storage",
    "storage_settings",
]

EXIT_USAGE: Final = 2


class UsageError(Exception):
    """Bad command-line input; printed as ``bubu: <message>`` with exit code 2."""


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"bubu: {message}", file=sys.stderr)
    return code


def load_json_arg(option: str, value: str | None) -> dict[str, Any]:
    """Parse ``--inputs``/``--config``: inline JSON or ``@path``; must be a JSON object.

    Raises:
        UsageError: unreadable file, invalid JSON (with line and column), or not an object.
    """
    if value is None:
        return {}
    text = value
    if value.startswith("@"):
        path = value[1:]
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{option}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = "array" if isinstance(data, list) else type(data).__name__
        raise UsageError(f"{option}: expected a JSON object, got {kind}")
    return data


def _parse_secrets(values: Sequence[str]) -> dict[str, str]:
    secrets: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--secret: expected name=value, got {item.split('=')[0]!r}")
        if "__" in name or name.upper().endswith("_NAME"):
            # BUBU_SECRET_<name> skips these names (docs/contract/runtime-environment.md#secrets);
            # refuse rather than drop silently.
            raise UsageError(f"--secret: {name!r}: names may not contain '__' or end in _NAME")
        secrets[name] = value
    return secrets


def _parse_timeout(value: str | None) -> str | None:
    if value is None:
        return None
    from bubu._runtime.parse import GoParseError, format_go_duration, parse_go_duration

    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parse_go_duration(text)
        except GoParseError as exc:
            raise UsageError(f"--timeout: {exc} (use 30s, 2m, 1h30m or seconds)") from None
    if seconds <= 0:
        raise UsageError(f"--timeout: must be positive, got {value!r}")
    return format_go_duration(seconds)


_LOADED: dict[Path, Any] = {}


def _load_module(path: str) -> Any:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{path}: no such file")
    if (loaded := _LOADED.get(file.resolve())) is not None:
        return loaded  # `bubu run` looks at the component before its runner loads it
    name = f"bubu_user_{file.stem}_{os.getpid()}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # Let the engram import its siblings, as `python path.py` would.
    sys.path.insert(0, str(file.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UsageError(f"{path}: cannot load: {type(exc).__name__}: {exc}") from exc
    _LOADED[file.resolve()] = module
    return module


def find_engram(module: Any, selector: str | None, base: type) -> Any:
    """Find the engram in ``module``: ``selector``, else ``engram``, ``Engram``, else the one
    subclass of ``base`` defined there. Classes are instantiated without arguments.

    Raises:
        UsageError: nothing or more than one candidate found, or the class needs arguments.
    """
    origin = getattr(module, "__file__", "module")
    if selector:
        if not hasattr(module, selector):
            raise UsageError(f"{origin}: no attribute {selector!r}")
        found = getattr(module, selector)
    elif hasattr(module, "engram"):
        found = module.engram
    elif hasattr(module, "Engram"):
        found = module.Engram
    else:
        candidates = [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj)
            and issubclass(obj, base)
            and obj.__module__ == module.__name__
            and not inspect.isabstract(obj)
        ]
        if not candidates:
            raise UsageError(f"{origin}: no {base.__name__} subclass found; name one with :Name")
        if len(candidates) > 1:
            names = ", ".join(sorted(c.__name__ for c in candidates))
            raise UsageError(f"{origin}: several engrams ({names}); pick one with path.py:Name")
        found = candidates[0]
    if inspect.isclass(found):
        try:
            found = found()
        except TypeError as exc:
            raise UsageError(f"cannot create {found.__name__}(): {exc}") from None
    if not isinstance(found, base):
        raise UsageError(f"{type(found).__name__} is not a {base.__name__}")
    return found


def _split_target(target: str) -> tuple[str, str | None]:
    path, sep, name = target.rpartition(":")
    if sep and path.endswith(".py") and name.isidentifier():
        return path, name
    return target, None


def _source_for(args: argparse.Namespace) -> dict[str, str]:
    inputs = load_json_arg("--inputs", args.inputs)
    config = load_json_arg("--config", args.config)
    secrets = _parse_secrets(args.secret or [])
    timeout = _parse_timeout(args.timeout)
    # Local mode: the caller's BUBU_* settings apply, but never a StepRun identity (the
    # memory status sink is used regardless) or inherited secrets.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BUBU_SECRET_") and k not in ("BUBU_TRIGGER_DATA", "BUBU_STEP_CONFIG")
    }
    env["BUBU_TRIGGER_DATA"] = json.dumps(inputs)
    env["BUBU_STEP_CONFIG"] = json.dumps(config)
    for name, value in secrets.items():
        env[f"BUBU_SECRET_{name}"] = value
    if timeout is not None:
        env["BUBU_STEP_TIMEOUT"] = timeout
    if args.debug:
        env["BUBU_DEBUG"] = "true"
    return env


def storage_settings(args: argparse.Namespace, values: dict[str, str]) -> Path | None:
    """Apply ``--storage-path``/``--no-storage``/``--max-inline-size`` to ``values``.

    Without either storage option and without a ``BUBU_STORAGE_PROVIDER`` in the environment,
    a local run gets the ``file`` provider in a new temporary directory, so storage refs in
    ``--inputs`` resolve and large outputs are offloaded as in a cluster with storage.

    Returns:
        The temporary directory made here (``report_storage`` removes it when unused).
    """
    from bubu._runtime.env import storage_named
    from bubu._runtime.sources import MappingSource

    made: Path | None = None
    if getattr(args, "no_storage", False):
        for key in [k for k in values if k.startswith("BUBU_STORAGE_")]:
            del values[key]
    elif getattr(args, "storage_path", None):
        root = Path(args.storage_path).resolve()
        root.mkdir(parents=True, exist_ok=True)
        values.update({"BUBU_STORAGE_PROVIDER": "file", "BUBU_STORAGE_PATH": str(root)})
    elif not storage_named(MappingSource(values)):
        made = _new_store_dir()
        values.update({"BUBU_STORAGE_PROVIDER": "file", "BUBU_STORAGE_PATH": str(made)})
    limit = getattr(args, "max_inline_size", None)
    if limit is not None:
        values["BUBU_MAX_INLINE_SIZE"] = str(limit)
    return made


def _new_store_dir() -> Path:
    # Not tempfile.mkdtemp: importing tempfile costs more than the run it serves. The name is
    # unique for this process and moment; mkdir's mode keeps it private, as mkdtemp's does.
    base = Path(os.environ.get("TMPDIR") or "/tmp")
    for attempt in range(100):
        path = base / f"bubu-run-{os.getpid()}-{time.monotonic_ns()}-{attempt}"
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path
    raise UsageError(f"cannot create a temporary store under {base}")


def report_storage(made: Path | None) -> None:
    """Remove the temporary store when nothing was written; else say where it is."""
    if made is None:
        return
    try:
        made.rmdir()  # the usual case: nothing was offloaded
        return
    except OSError:
        pass
    if any(p.is_file() for p in made.rglob("*")):
        print(f"bubu: offloaded data is in {made}", file=sys.stderr)
        return
    import shutil

    shutil.rmtree(made, ignore_errors=True)


def _run_batch(args: argparse.Namespace) -> int:
    from bubu._batch import BatchReport, run_batch
    from bubu._k8s.status import MemoryStatusSink
    from bubu._runtime.sources import MappingSource
    from bubu._startup import run_process
    from bubu.engram import BatchEngram
    from bubu.errors import ContractError, SchemaValidationError, SecretExpansionError

    path, selector = _split_target(args.target)
    values = _source_for(args)
    engram = find_engram(_load_module(path), selector, BatchEngram)
    made = storage_settings(args, values)
    secret_values = [v for k, v in values.items() if k.startswith("BUBU_SECRET_")]
    quiet = not args.verbose and not args.debug
    sink = MemoryStatusSink()
    reports: list[BatchReport] = []

    async def go() -> int:
        if quiet:
            # The CLI reports the outcome itself in one line; keep the lifecycle logs quiet.
            logging.getLogger("bubu.batch").setLevel(logging.CRITICAL)
        keep_engram_logs(args)
        report = await run_batch(
            engram,
            source=MappingSource(values),
            status_sink=sink,
            log_stream=sys.stderr,
            extra_secret_values=secret_values,
        )
        reports.append(report)
        return report.exit_code

    # The same process start-up as bubu.run: signals (first Ctrl-C stops the step, a second
    # one ends it without a traceback), JSON logs on stderr, secrets masked everywhere.
    try:
        code = run_process(
            go,
            debug=bool(args.debug),
            log_stream=sys.stderr,
            secret_values=secret_values,
            log_level=logging.WARNING if quiet else None,
        )
    finally:
        report_storage(made)
    if not reports:
        # A second signal: the terminal status was written while the step unwound.
        message = sink.status.get("lastFailureMsg") or "step interrupted"
        print(f"bubu: step failed: {message}", file=sys.stderr)
        return code
    report = reports[0]
    if report.exit_code == 0:
        print(json.dumps(report.output if report.output is not None else {}, ensure_ascii=False))
        return 0
    message = sink.status.get("lastFailureMsg") or str(report.exception or report.phase)
    exc = report.exception
    if isinstance(exc, SchemaValidationError | ContractError | SecretExpansionError):
        print(f"bubu: {message}", file=sys.stderr)
    elif report.phase == "Timeout":
        print(f"bubu: timed out: {message}", file=sys.stderr)
    else:
        print(f"bubu: step failed: {message}", file=sys.stderr)
    return report.exit_code


def keep_engram_logs(args: argparse.Namespace) -> None:
    """Let the engram's own lines (``bubu.engram``) show while the SDK's lifecycle is quiet."""
    logging.getLogger("bubu.engram").setLevel(logging.DEBUG if args.debug else logging.INFO)


def _run_stream(args: argparse.Namespace) -> int:
    from bubu._cli.stream import run_stream
    from bubu.engram import StreamingEngram

    path, selector = _split_target(args.target)
    values = _source_for(args)
    engram = find_engram(_load_module(path), selector, StreamingEngram)
    made = storage_settings(args, values)
    try:
        return run_stream(args, values, engram)
    finally:
        report_storage(made)


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """Call ``module.name`` on first use (the subcommand modules import this package)."""

    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args)

    return call


RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "batch": _run_batch,
    "stream": _run_stream,
    "impulse": _lazy("bubu._cli.local", "run_impulse"),
}
"""``bubu run`` runners by mode; ``_cmd_run`` picks one from the component's kind."""


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="path/to/engram.py, or path/to/engram.py:Name")
    parser.add_argument("--inputs", help="step inputs: a JSON object, or @file.json")
    parser.add_argument("--config", help="engram config: a JSON object, or @file.json")
    parser.add_argument(
        "--secret",
        action="append",
        metavar="NAME=VALUE",
        help="a secret (repeatable); VALUE may be env:PREFIX or file:path as in a pod",
    )
    parser.add_argument("--timeout", help="step timeout: 30s, 5m, 1h (BUBU_STEP_TIMEOUT)")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="run a streaming engram: JSON lines on stdin in, published messages out",
    )
    storage = parser.add_mutually_exclusive_group()
    storage.add_argument(
        "--storage-path",
        metavar="DIR",
        help="file store for storage refs and offloaded data (default: a temporary directory)",
    )
    storage.add_argument(
        "--no-storage",
        action="store_true",
        help="run as in a cluster without storage (refs fail, large outputs are refused)",
    )
    parser.add_argument(
        "--max-inline-size",
        type=_non_negative,
        metavar="BYTES",
        help="offload values above this size (BUBU_MAX_INLINE_SIZE, default 1024)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the SDK's lifecycle logs")
    parser.add_argument("--debug", action="store_true", help="BUBU_DEBUG: debug logs, tracebacks")


def _cmd_run(args: argparse.Namespace) -> int:
    from bubu._cli.local import choose_runner

    # The runner follows the component's kind; misuse (a streaming engram without --stream,
    # an option the mode cannot honour) is refused there with the fix.
    return RUNNERS[choose_runner(args)](args)


COMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "run": ("run an engram or impulse locally, without a cluster", _add_run_arguments, _cmd_run),
    "init": (
        "scaffold a batch engram, streaming engram or impulse (module, test, template, Dockerfile)",
        _lazy("bubu._cli.scaffold", "add_init_arguments"),
        _lazy("bubu._cli.scaffold", "cmd_init"),
    ),
    "schema": (
        "print the template schemas generated from a component's types",
        _lazy("bubu._cli.template", "add_schema_arguments"),
        _lazy("bubu._cli.template", "cmd_schema"),
    ),
    "check": (
        "fail when a template YAML and the component's code disagree",
        _lazy("bubu._cli.template", "add_check_arguments"),
        _lazy("bubu._cli.template", "cmd_check"),
    ),
    "eval": (
        "evaluate a template against variables, as the SDK resolves inputs",
        _lazy("bubu._cli.evaluate", "add_eval_arguments"),
        _lazy("bubu._cli.evaluate", "cmd_eval"),
    ),
}
"""Subcommands: name -> (help, add_arguments, handler)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``bubu: <problem> (see 'bubu run --help')``).

    argparse prints the whole usage block before the error; the issue asks for one clear
    line. Subcommand parsers inherit this class (``add_subparsers`` uses the parent's type).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"bubu: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    from bubu._version import __version__

    parser = _Parser(prog="bubu", description="BubuStack Python SDK tools")
    parser.add_argument("--version", action="version", version=f"bubu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, handler) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(cmd)
        cmd.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bubu`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = handler(args)
    except UsageError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
