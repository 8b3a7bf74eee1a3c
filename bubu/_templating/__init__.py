"""Runtime templates: a Go ``text/template`` evaluator with core's rules.

See docs/templates.md#templates.

docs/templates.md is the user-facing page; docs/differences.md lists where bubu departs.

What a template is: a string containing ``{{``, or a map ``{"$bubuTemplate": expr,
"$bubuTemplateVars": {...}}``. ``Evaluator.resolve_value`` walks maps and lists (depth 128,
cycles refused), renders strings, and returns typed values for single-action templates.
Roots are ``inputs``, ``steps`` and ``packet`` (the leading dot is optional).

Where it runs: ``bubu._payloads`` calls these for every run (batch inputs and config, streaming
and impulse config; docs/contract/storage.md "The payload stages of a run"), only when the
payload holds a template or a reference:

* batch inputs, after storage hydration and before schema validation / typed decode::

      inputs = await resolve_inputs(raw_inputs, ctx.template_context,
                                    storage=hydrator, limits=TemplateLimits.from_env(env),
                                    skip=env.skip_input_templating)

* batch/impulse/streaming config, before typed decode::

      config = await hydrate_config(env.config, ctx.template_context,
                                    storage=hydrator, limits=TemplateLimits.from_env(env))

* trigger dedupe keys: ``bubu._triggers`` calls ``render_key_template`` (deterministic, 250 ms).

``storage`` is any object with ``async def hydrate(value) -> value`` (``StorageHydrator``):
the storage package's manager replaces ``$bubuStorageRef`` (with ``$bubuStoragePath``
selectors), ``$bubuConfigMapRef`` and ``$bubuSecretRef`` values with their content. The
evaluator itself never reads storage: a single-path template into an offloaded step output
returns a lazy selector, and a compound one fails with ``OffloadedDataError``
(docs/templates.md#templates).

Imports ``bubu._runtime`` (Go JSON encoding ``gojson``, storage-ref helpers ``refs``) and
``bubu.errors`` only.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgspec

from bubu._runtime import refs
from bubu._templating import _parse
from bubu._templating._exec import ExecError, LimitError, execute
from bubu._templating._funcs import BUILTIN_NAMES, GoFunc, build_funcs, storage_selector
from bubu._templating._gojson import GoJSONError, go_json
from bubu._templating._normalize import (
    NOT_A_PATH,
    MissingKey,
    PathError,
    evaluate_index_path,
    evaluate_simple_path,
    normalize_template_roots,
)
from bubu.errors import OffloadedDataError, TemplateBlockedError, TemplateError

__all__ = [
    "Evaluator",
    "StorageHydrator",
    "TemplateConfig",
    "TemplateLimits",
    "find_storage_ref_paths",
    "format_go_duration",
    "hydrate_config",
    "render_key_template",
    "resolve_inputs",
    "resolve_templates",
]

TEMPLATE_KEY = "$bubuTemplate"
TEMPLATE_VARS_KEY = "$bubuTemplateVars"
MAX_RESOLVE_DEPTH = 128
KEY_TEMPLATE_TIMEOUT = 0.25  # Go evaluates dedupe keys under a 250 ms deadline


class StorageHydrator(Protocol):
    """What the evaluator needs from storage: replace every reference inside a value."""

    async def hydrate(self, value: Any) -> Any:
        """Return ``value`` with storage, ConfigMap and Secret references replaced."""
        ...


@dataclass(frozen=True, slots=True)
class TemplateConfig:
    """core's ``templating.Config``: 0 disables a limit."""

    evaluation_timeout: float = 0.0
    max_output_bytes: int = 0
    deterministic: bool = False


def format_go_duration(seconds: float) -> str:
    """``time.Duration.String()`` for a timeout in seconds (``250ms``, ``30s``, ``1m30s``)."""
    from bubu._templating._dates import go_duration

    return go_duration(round(seconds * 1e9))


# --- the parse cache (docs/templates.md#templates: 1000 entries, 30 min) --------------------------

_CACHE_SIZE = 1000
_CACHE_TTL = 30 * 60.0


class _ParseCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[bytes, int], tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, text: str, names: frozenset[str]) -> _parse.Tree:
        # The function set is part of the key: the same text parses differently with the
        # builtins only (the single-action check) and with or without now/random.
        key = (hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(), hash(names))
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] <= _CACHE_TTL:
                self._entries.move_to_end(key)
                self.hits += 1
                result = entry[1]
            else:
                result = None
        if result is None:
            self.misses += 1
            try:
                result = _parse.parse(text, names)
            except _parse.ParseError as exc:
                result = exc
            with self._lock:
                self._entries[key] = (now, result)
                self._entries.move_to_end(key)
                while len(self._entries) > _CACHE_SIZE:
                    self._entries.popitem(last=False)
        if isinstance(result, _parse.ParseError):
            raise TemplateError(str(result), position=f"{result.line}:0")
        return result  # type: ignore[no-any-return]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_cache = _ParseCache()
_FUNCS: dict[bool, tuple[dict[str, GoFunc], frozenset[str]]] = {}


def _funcs(deterministic: bool) -> tuple[dict[str, GoFunc], frozenset[str]]:
    found = _FUNCS.get(deterministic)
    if found is None:
        funcs = build_funcs(deterministic=deterministic)
        found = (funcs, frozenset(funcs))
        _FUNCS[deterministic] = found
    return found


# --- helpers -----------------------------------------------------------------------------------


def _go_trim_space(s: str) -> str:
    from bubu._templating._funcs import _go_trim_space as trim

    return trim(s)


def _is_single_action(trimmed: str) -> bool:
    if not (trimmed.startswith("{{") and trimmed.endswith("}}")):
        return False
    try:
        # Go checks with a template that has only the builtins: a Sprig call such as
        # ``{{ add 1 2 }}`` is "not single-action" and its output stays a string
        # (docs/templates.md#templates).
        tree = _cache.get(trimmed, BUILTIN_NAMES)
    except TemplateError:
        return False
    nodes = tree.root.nodes
    return len(nodes) == 1 and isinstance(nodes[0], _parse.ActionNode)


def _parse_json_value(raw: str) -> tuple[bool, Any]:
    trimmed = _go_trim_space(raw)
    if not trimmed:
        return False, None
    data = trimmed.encode("utf-8", "surrogatepass")
    if b"-0" in data:
        # Go decodes a JSON number into float64, so `-0` (what a template prints for the float
        # -0) keeps its sign; msgspec reads it as the int 0. Spelled `-0.0`, it stays the float.
        data = re.sub(_MINUS_ZERO, _float_minus_zero, data)
    try:
        return True, msgspec.json.decode(data)
    except msgspec.DecodeError:
        return False, None


# A `-0` number token: not in a string (strings are matched whole and kept), not an exponent
# (`1e-0`), not the start of a longer number (`-0.5`, `-0e1`, the invalid `-01`). Source text:
# ``re`` compiles it on first use, not at import (a rare road).
_MINUS_ZERO: Final = rb'("(?:[^"\\]|\\.)*")|(?<![eE0-9.])-0(?![.eE0-9])'


def _float_minus_zero(match: re.Match[bytes]) -> bytes:
    return match.group(1) or b"-0.0"


def _step_references(text: str, names: frozenset[str]) -> set[str]:
    try:
        tree = _cache.get(text, names)
    except TemplateError:
        return set()
    if tree.step_refs is None:
        tree.step_refs = _collect_step_refs(tree)
    return tree.step_refs


def _collect_step_refs(tree: _parse.Tree) -> set[str]:
    seen: set[str] = set()

    def pipe(p: _parse.PipeNode | None) -> None:
        if p is None:
            return
        for cmd in p.cmds:
            command(cmd)

    def command(cmd: _parse.CommandNode) -> None:
        args = cmd.args
        if (
            len(args) >= 3
            and isinstance(args[0], _parse.IdentifierNode)
            and args[0].ident == "index"
            and isinstance(args[1], _parse.FieldNode)
            and args[1].ident[:1] == ["steps"]
            and isinstance(args[2], _parse.StringNode)
        ):
            seen.add(args[2].text)
        for arg in args:
            if isinstance(arg, _parse.FieldNode):
                if len(arg.ident) >= 2 and arg.ident[0] == "steps":
                    seen.add(arg.ident[1])
            elif isinstance(arg, _parse.ChainNode):
                inner = arg.node
                if (
                    isinstance(inner, _parse.FieldNode)
                    and inner.ident[:1] == ["steps"]
                    and arg.fields
                ):
                    seen.add(arg.fields[0])
                if isinstance(inner, _parse.PipeNode):
                    pipe(inner)
            elif isinstance(arg, _parse.PipeNode):
                pipe(arg)

    def walk(node: _parse.Node) -> None:
        if isinstance(node, _parse.ListNode):
            for child in node.nodes:
                walk(child)
        elif isinstance(node, _parse.ActionNode):
            pipe(node.pipe)
        elif isinstance(node, _parse.BranchNode):
            pipe(node.pipe)
            walk(node.list)
            if node.else_list is not None:
                walk(node.else_list)

    walk(tree.root)
    return seen


def _has_storage_refs_in_steps(
    text: str, variables: Mapping[str, Any], names: frozenset[str]
) -> bool:
    steps = variables.get("steps")
    if not isinstance(steps, dict):
        return False
    for ref in _step_references(text, names):
        if ref in steps and refs.mentions_storage_ref(steps[ref]):
            return True
    return False


_PREPARED: OrderedDict[str, tuple[str, str, bool]] = OrderedDict()
_PREPARED_LOCK = threading.Lock()


def _prepare(text: str) -> tuple[str, str, bool]:
    """Normalised text, its trimmed form and whether it is one action; memoised (the
    normaliser is pure and, in Python, as costly as a small render)."""
    with _PREPARED_LOCK:
        found = _PREPARED.get(text)
        if found is not None:
            _PREPARED.move_to_end(text)
            return found
    normalized = normalize_template_roots(text)
    trimmed = _go_trim_space(normalized)
    prepared = (normalized, trimmed, _is_single_action(trimmed))
    with _PREPARED_LOCK:
        _PREPARED[text] = prepared
        while len(_PREPARED) > _CACHE_SIZE:
            _PREPARED.popitem(last=False)
    return prepared


# --- the evaluator -----------------------------------------------------------------------------


class Evaluator:
    """core's ``templating.Evaluator``: resolves templates inside JSON-like values."""

    def __init__(self, config: TemplateConfig | None = None) -> None:
        self.config = config or TemplateConfig()
        if self.config.evaluation_timeout < 0:
            raise TemplateError("evaluation timeout must be >= 0")
        if self.config.max_output_bytes < 0:
            raise TemplateError("max output bytes must be >= 0")
        self._funcs, self._names = _funcs(self.config.deterministic)

    # public -------------------------------------------------------------------------------------

    def resolve_value(self, value: Any, variables: Mapping[str, Any] | None) -> Any:
        """Resolve every template inside ``value`` (maps, lists, strings, wrappers).

        Raises:
            TemplateError: with Go's text; ``TemplateBlockedError`` / ``OffloadedDataError``
                for the two special cases of docs/templates.md#templates.
        """
        return self._resolve(value, dict(variables or {}), set(), 0)

    def resolve_template_string(self, text: str, variables: Mapping[str, Any] | None) -> Any:
        """Resolve one template string; a single-action template returns a typed value."""
        return self._string(text, dict(variables or {}))

    def resolve_with_inputs(
        self, with_: Mapping[str, Any] | None, variables: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """Resolve a ``with`` block, which must stay an object."""
        if with_ is None:
            return None
        out = self.resolve_value(dict(with_), variables)
        if not isinstance(out, dict):
            raise TemplateError(f"resolved with block must be an object, got {_go_type(out)}")
        return out

    def evaluate_condition(self, expr: str, variables: Mapping[str, Any] | None) -> bool:
        """A boolean template: ``true``/``1``/``yes``/``y`` and their opposites, or a bool."""
        if not expr.strip():
            return True
        value = self.resolve_template_string(expr, variables)
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            s = value.lower().strip()
            if s in ("true", "1", "yes", "y"):
                return True
            if s in ("false", "0", "no", "n", ""):
                return False
            raise TemplateError(
                f"condition did not resolve to boolean: {msgspec.json.encode(value).decode()}"
            )
        raise TemplateError(f"condition did not resolve to boolean, got {_go_type(value)}")

    # internals ----------------------------------------------------------------------------------

    def _resolve(
        self, value: Any, variables: dict[str, Any], visiting: set[int], depth: int
    ) -> Any:
        if depth > MAX_RESOLVE_DEPTH:
            raise TemplateError(f"template value exceeded max resolve depth {MAX_RESOLVE_DEPTH}")
        if isinstance(value, dict):
            return self._map(value, variables, visiting, depth)
        if isinstance(value, list | tuple):
            key = id(value)
            if key in visiting:
                raise TemplateError("cyclic template value detected")
            visiting.add(key)
            try:
                out = []
                for i, item in enumerate(value):
                    try:
                        out.append(self._resolve(item, variables, visiting, depth + 1))
                    except TemplateError as exc:
                        raise type(exc)(f"index {i}: {exc}", position=exc.position) from None
                return out
            finally:
                visiting.discard(key)
        if isinstance(value, str):
            return self._string(value, variables)
        return value

    def _map(
        self, value: dict[str, Any], variables: dict[str, Any], visiting: set[int], depth: int
    ) -> Any:
        key = id(value)
        if key in visiting:
            raise TemplateError("cyclic template value detected")
        visiting.add(key)
        try:
            if TEMPLATE_KEY in value:
                expr = value[TEMPLATE_KEY]
                if not isinstance(expr, str):
                    raise TemplateError(f"{TEMPLATE_KEY} must be a string")
                merged = variables
                if TEMPLATE_VARS_KEY in value:
                    try:
                        extra = self._resolve(
                            value[TEMPLATE_VARS_KEY], variables, visiting, depth + 1
                        )
                    except TemplateError as exc:
                        raise type(exc)(f"template vars: {exc}", position=exc.position) from None
                    if extra is not None:
                        if not isinstance(extra, dict):
                            raise TemplateError(f"{TEMPLATE_VARS_KEY} must be an object")
                        if extra:
                            merged = {**variables, **extra}
                return self._string(expr, merged)
            out: dict[str, Any] = {}
            for name, item in value.items():
                try:
                    out[name] = self._resolve(item, variables, visiting, depth + 1)
                except TemplateError as exc:
                    if name == TEMPLATE_VARS_KEY:
                        raise type(exc)(f"template vars: {exc}", position=exc.position) from None
                    raise
            return out
        finally:
            visiting.discard(key)

    def _string(self, value: str, variables: dict[str, Any]) -> Any:
        if "{{" not in value:
            return value
        normalized, trimmed, single = _prepare(value)
        if single:
            expr = trimmed[2:-2].strip()
            if expr:
                for fast in (evaluate_simple_path, evaluate_index_path):
                    try:
                        found = fast(expr, variables)
                    except MissingKey as exc:
                        if exc.blocked:
                            raise TemplateBlockedError(
                                f"template evaluation blocked: {exc}"
                            ) from None
                        raise TemplateError(str(exc)) from None
                    except PathError as exc:
                        raise TemplateError(str(exc)) from None
                    if found is not NOT_A_PATH:
                        return found
        if _has_storage_refs_in_steps(normalized, variables, self._names):
            raise OffloadedDataError(
                "offloaded data usage detected: compound template references step output "
                "containing storage ref"
            )
        rendered = self._render(normalized, variables)
        if single:
            ok, parsed = _parse_json_value(rendered)
            if ok:
                return parsed
        return rendered

    def _render(self, text: str, variables: dict[str, Any]) -> str:
        tree = _cache.get(text, self._names)
        timeout = self.config.evaluation_timeout
        deadline = time.monotonic() + timeout if timeout > 0 else None
        try:
            return execute(
                tree,
                variables,
                self._funcs,
                max_output=self.config.max_output_bytes,
                deadline=deadline,
                timeout_text=f"template evaluation timed out after {format_go_duration(timeout)}",
            )
        except LimitError as exc:
            raise TemplateError(str(exc)) from None
        except ExecError as exc:
            text_ = str(exc)
            if "offloaded data usage detected" in text_:
                raise OffloadedDataError(text_, position=exc.position) from None
            raise TemplateError(text_, position=exc.position) from None


def _go_type(value: Any) -> str:
    from bubu._templating._values import go_type

    return go_type(value)


# --- the SDK's second pass (cel_templates.go, config_hydration.go) -----------------------------


@dataclass(frozen=True, slots=True)
class TemplateLimits:
    """``BUBU_TEMPLATE_*`` and ``BUBU_CONFIG_HYDRATION_*``.

    See docs/contract/runtime-environment.md#inputs-config-secrets.
    """

    max_input_bytes: int = 8 * 1024 * 1024
    max_output_bytes: int = 1024 * 1024
    evaluation_timeout: float = 30.0
    config_max_depth: int = 64
    config_max_nodes: int = 10_000

    @classmethod
    def from_env(cls, env: Any) -> TemplateLimits:
        """Read the limits from a ``RuntimeEnv`` (``bubu._runtime.env.load_env``)."""
        return cls(
            max_input_bytes=env.template_max_input_bytes,
            max_output_bytes=env.template_max_output_bytes,
            evaluation_timeout=env.template_evaluation_timeout,
            config_max_depth=env.config_hydration_max_depth,
            config_max_nodes=env.config_hydration_max_nodes,
        )


def _json_size(scope: str, value: Any) -> int:
    try:
        return len(go_json(value).encode("utf-8", "surrogatepass"))
    except (GoJSONError, TypeError, RecursionError) as exc:
        raise TemplateError(f"template {scope} size check failed: {exc}") from None


def _check_size(scope: str, value: Any, limit: int) -> None:
    if limit <= 0:
        return
    size = _json_size(scope, value)
    if size > limit:
        raise TemplateError(f"template {scope} exceeds max input bytes ({size} > {limit})")


def _normalize_context(variables: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"inputs": {}, "steps": {}}
    if variables:
        out.update(variables)
    if out.get("inputs") is None:
        out["inputs"] = {}
    if out.get("steps") is None:
        out["steps"] = {}
    return out


async def resolve_templates(
    payload: Any,
    variables: Mapping[str, Any] | None,
    *,
    storage: StorageHydrator | None = None,
    limits: TemplateLimits | None = None,
) -> Any:
    """Go's ``resolveTemplates``: size checks, context hydration, then ``resolve_value``.

    Raises:
        TemplateError: a limit, a hydration result that is not an object, or a template error.
    """
    if payload is None:
        return None
    lim = limits or TemplateLimits()
    _check_size("payload", payload, lim.max_input_bytes)
    context: Any = variables
    if variables is not None and storage is not None:
        context = await storage.hydrate(dict(variables))
        if context is not None and not isinstance(context, dict):
            raise TemplateError(f"CEL context must be an object, got {_go_type(context)}")
    context = _normalize_context(context)
    _check_size("context", context, lim.max_input_bytes)
    evaluator = Evaluator(
        TemplateConfig(
            evaluation_timeout=lim.evaluation_timeout, max_output_bytes=lim.max_output_bytes
        )
    )
    return evaluator.resolve_value(payload, context)


Path = refs.RefPath


def find_storage_ref_paths(value: Mapping[str, Any] | None) -> list[Path]:
    """Paths of every ``$bubuStorageRef`` map (not descending into one), in document order."""
    return refs.storage_ref_paths(value)


def _swap(root: dict[str, Any], path: Path, replacement: Any) -> tuple[bool, Any]:
    current: Any = root
    for i, seg in enumerate(path):
        last = i == len(path) - 1
        if isinstance(seg, int):
            if not isinstance(current, list) or not 0 <= seg < len(current):
                return False, None
        elif not isinstance(current, dict) or seg not in current:
            return False, None
        if last:
            old = current[seg]
            current[seg] = replacement
            return True, old
        current = current[seg]
    return False, None


def _extract(root: dict[str, Any], paths: list[Path]) -> list[tuple[Path, Any]]:
    # Hydrated storage content is user data: it may hold literal "{{ }}" that must never be
    # evaluated (docs/templates.md#templates), so it is swapped out for the template pass and put
    # back afterwards.
    extracted = []
    for i, path in enumerate(paths):
        ok, old = _swap(root, path, f"__bubu_storage_ref_skip_{i}__")
        if ok:
            extracted.append((path, old))
    return extracted


def _restore(root: dict[str, Any], extracted: list[tuple[Path, Any]]) -> None:
    for path, value in extracted:
        _swap(root, path, value)


class _Guard:
    def __init__(self, max_depth: int, max_nodes: int) -> None:
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.nodes = 0
        self.stack: set[int] = set()

    def walk(self, value: Any, depth: int) -> None:
        if depth > self.max_depth:
            raise TemplateError(f"config exceeds max depth {self.max_depth}")
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise TemplateError(f"config exceeds max nodes {self.max_nodes}")
        if isinstance(value, dict | list):
            key = id(value)
            if value and key in self.stack:
                raise TemplateError("config contains cycle")
            self.stack.add(key)
            try:
                for child in value.values() if isinstance(value, dict) else value:
                    self.walk(child, depth + 1)
            finally:
                self.stack.discard(key)


def _guard(config: dict[str, Any], limits: TemplateLimits, stage: str) -> None:
    try:
        _Guard(limits.config_max_depth, limits.config_max_nodes).walk(config, 0)
    except TemplateError as exc:
        raise TemplateError(f"{stage}: {exc}") from None


async def hydrate_config(
    config: Mapping[str, Any] | None,
    variables: Mapping[str, Any] | None,
    *,
    storage: StorageHydrator | None,
    limits: TemplateLimits | None = None,
) -> dict[str, Any] | None:
    """Go's ``hydrateConfig``: guard, hydrate refs, resolve templates around hydrated values.

    Raises:
        TemplateError: a cycle, the depth or node budget, or a template error (prefixed
            ``failed to resolve config templates:``).
    """
    if not config:
        return dict(config) if config is not None else None
    if storage is None:
        raise TemplateError("storage manager is required to hydrate config")
    lim = limits or TemplateLimits()
    # A private deep copy: extraction swaps values in place (cyclic input stays as is so the
    # guard can name the cycle).
    working: dict[str, Any] = (
        msgspec.json.decode(msgspec.json.encode(config)) if _acyclic(config) else dict(config)
    )
    _guard(working, lim, "config rejected before hydration")
    paths = find_storage_ref_paths(working)
    hydrated = await storage.hydrate(working)
    if hydrated is None:
        return None
    if not isinstance(hydrated, dict):
        raise TemplateError(f"hydrated config must be an object, got {_go_type(hydrated)}")
    _guard(hydrated, lim, "hydrated config rejected before template resolution")
    extracted = _extract(hydrated, paths)
    try:
        resolved = await resolve_templates(hydrated, variables, storage=storage, limits=lim)
    except TemplateError as exc:
        raise type(exc)(
            f"failed to resolve config templates: {exc}", position=exc.position
        ) from None
    if resolved is None:
        return {}
    if not isinstance(resolved, dict):
        raise TemplateError(f"resolved config must be an object, got {_go_type(resolved)}")
    _restore(resolved, extracted)
    return resolved


def _acyclic(value: Any) -> bool:
    try:
        msgspec.json.encode(value)
    except (TypeError, ValueError, RecursionError, OverflowError):
        return False
    return True


async def resolve_inputs(
    inputs: Mapping[str, Any] | None,
    variables: Mapping[str, Any] | None,
    *,
    storage: StorageHydrator | None,
    limits: TemplateLimits | None = None,
    skip: bool = False,
) -> dict[str, Any]:
    """Go's input preparation before validation: hydrate refs, resolve templates around them.

    Values that came out of storage are never template-evaluated (docs/templates.md#templates).
    ``skip`` is ``BUBU_SKIP_INPUT_TEMPLATING``.

    Raises:
        TemplateError: prefixed ``failed to resolve input templates:``.
    """
    raw = dict(inputs or {})
    paths = find_storage_ref_paths(raw)
    hydrated: Any = await storage.hydrate(raw) if storage is not None else raw
    if hydrated is None:
        hydrated = {}
    if not isinstance(hydrated, dict):
        raise TemplateError(
            f"hydrated inputs have unexpected type {_go_type(hydrated)} (want map[string]any)"
        )
    extracted = _extract(hydrated, paths)
    resolved: Any = hydrated
    if not skip:
        try:
            resolved = await resolve_templates(hydrated, variables, storage=storage, limits=limits)
        except TemplateError as exc:
            raise type(exc)(
                f"failed to resolve input templates: {exc}", position=exc.position
            ) from None
        if resolved is None:
            resolved = {}
    if not isinstance(resolved, dict):
        raise TemplateError(
            f"resolved inputs have unexpected type {_go_type(resolved)} (want map[string]any)"
        )
    _restore(resolved, extracted)
    return resolved


# --- trigger dedupe keys (docs/contract/story-trigger.md#delivery-identity) -----------------------


def render_key_template(template: str, variables: Mapping[str, Any]) -> Any:
    """Evaluate ``BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE`` as Go's ``computeTriggerKey`` does.

    Deterministic functions only (no ``now``, no random), a 250 ms deadline, the full
    text/template language. Returns the typed value of a single-action template, else the
    rendered text.

    Raises:
        TemplateError: Go's error text (``resolve trigger key template:`` is added by the caller).
    """
    evaluator = Evaluator(
        TemplateConfig(evaluation_timeout=KEY_TEMPLATE_TIMEOUT, deterministic=True)
    )
    return evaluator.resolve_template_string(template, variables)


def clear_parse_cache() -> None:
    """Forget every parsed template (tests and benchmarks)."""
    _cache.clear()
    with _PREPARED_LOCK:
        _PREPARED.clear()


def parse_cache_stats() -> tuple[int, int]:
    """``(hits, misses)`` of the parse cache since the process started."""
    return _cache.hits, _cache.misses


__all__ += ["clear_parse_cache", "parse_cache_stats", "storage_selector"]
