"""``bubu schema`` and ``bubu check``: template schemas from the code, and drift between them.

``bubu schema path.py`` prints the schema fields of the component's ``EngramTemplate`` or
``ImpulseTemplate`` (YAML, or ``--format json``); ``--template`` prints a whole template;
``--write Engram.yaml`` puts the generated fields into an existing template file (keeping
everything else) or writes a new one.

``bubu check path.py [Engram.yaml]`` exits 1 when the template and the code disagree: a schema
that differs (each difference printed with its path, such as
``spec.inputSchema.properties.name.type``), a template of the wrong kind, or ``supportedModes``
the component cannot run in. The template defaults to ``Engram.yaml`` or ``Impulse.yaml`` beside
the module.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, Final

from bubu._cli import UsageError
from bubu._cli.components import Component, load_component
from bubu._cli.term import Term

__all__ = [
    "add_check_arguments",
    "add_schema_arguments",
    "cmd_check",
    "cmd_schema",
    "diff",
    "template_document",
]

API_VERSION: Final = "catalog.bubustack.io/v1alpha1"
_KIND: Final = {
    "batch": "EngramTemplate",
    "streaming": "EngramTemplate",
    "dual": "EngramTemplate",
    "impulse": "ImpulseTemplate",
}
_FILE: Final = {"EngramTemplate": "Engram.yaml", "ImpulseTemplate": "Impulse.yaml"}
# Where each kind can run (the Engram/Impulse ``mode``): batch engrams are Jobs; streaming
# engrams and impulses are long-running Deployments or StatefulSets.
_MODES: Final = {
    "batch": ("job",),
    "streaming": ("deployment", "statefulset"),
    "dual": ("job", "deployment", "statefulset"),
    "impulse": ("deployment", "statefulset"),
}


def _schemas(component: Component) -> dict[str, Any]:
    from bubu._cli.schema import SchemaError, component_schemas

    try:
        return component_schemas(component.cls)
    except SchemaError as exc:
        raise UsageError(f"{component.path}: {exc}") from None


def _dns_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", text).lower())
    return name.strip("-")[:63] or "component"


def template_document(
    component: Component, *, name: str | None = None, image: str | None = None
) -> dict[str, Any]:
    """Return a whole template (``EngramTemplate`` or ``ImpulseTemplate``) for ``component``."""
    kind = _KIND[component.kind]
    name = name or _dns_name(component.path.stem)
    spec: dict[str, Any] = {
        "version": "0.1.0",
        "description": _first_line(component.cls.__doc__),
        "supportedModes": list(_MODES[component.kind][: 2 if component.kind == "dual" else 1]),
        "image": image or f"registry.example.com/{name}:0.1.0",
    }
    if not spec["description"]:
        del spec["description"]
    spec.update(_schemas(component))
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0].strip()


def _dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    import yaml

    text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return text


def _read_template(path: Path) -> tuple[dict[str, Any], list[Any]]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise UsageError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") in ("EngramTemplate", "ImpulseTemplate"):
            return doc, docs
    raise UsageError(f"{path}: no EngramTemplate or ImpulseTemplate document")


def _default_template(component: Component) -> Path:
    return component.path.parent / _FILE[_KIND[component.kind]]


def add_schema_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bubu schema``."""
    parser.add_argument("target", help="path/to/component.py, or path/to/component.py:Name")
    parser.add_argument("--format", choices=("yaml", "json"), default="yaml")
    parser.add_argument(
        "--template", action="store_true", help="print a whole EngramTemplate/ImpulseTemplate"
    )
    parser.add_argument(
        "--write",
        metavar="TEMPLATE",
        help="put the schemas into this template file (created when missing)",
    )


def cmd_schema(args: argparse.Namespace) -> int:
    """Run ``bubu schema``."""
    component = load_component(args.target)
    if args.write:
        path = Path(args.write)
        term = Term()
        if path.exists():
            doc, docs = _read_template(path)
            spec = doc.setdefault("spec", {})
            spec.update(_schemas(component))
            import yaml

            path.write_text(
                yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, width=100),
                encoding="utf-8",
            )
            term.ok(f"updated the schemas in {path}")
        else:
            path.write_text(_dump(template_document(component), "yaml"), encoding="utf-8")
            term.ok(f"wrote {path}")
        return 0
    data = template_document(component) if args.template else _schemas(component)
    print(_dump(data, args.format), end="")
    return 0


def diff(template: Any, code: Any, path: str) -> list[str]:
    """Return one line per difference between a template value and the generated one."""
    if isinstance(template, dict) and isinstance(code, dict):
        out: list[str] = []
        for key in code:
            sub = f"{path}.{key}"
            if key not in template:
                out.append(f"{sub}: in the code, missing from the template")
            else:
                out.extend(diff(template[key], code[key], sub))
        out.extend(
            f"{path}.{key}: in the template, not in the code" for key in template if key not in code
        )
        return out
    if isinstance(template, list) and isinstance(code, list) and len(template) == len(code):
        return [
            line
            for i, (t, c) in enumerate(zip(template, code, strict=True))
            for line in diff(t, c, f"{path}[{i}]")
        ]
    if template != code or type(template) is not type(code):
        return [f"{path}: the template has {_short(template)}, the code has {_short(code)}"]
    return []


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bubu check``."""
    parser.add_argument("target", help="path/to/component.py, or path/to/component.py:Name")
    parser.add_argument(
        "template",
        nargs="?",
        help="the template YAML (default: Engram.yaml/Impulse.yaml beside it)",
    )


def cmd_check(args: argparse.Namespace) -> int:
    """Run ``bubu check``: 0 when the template matches the code, 1 when it does not."""
    component = load_component(args.target)
    path = Path(args.template) if args.template else _default_template(component)
    if not path.exists():
        raise UsageError(
            f"{path}: no such template; create it with 'bubu schema {args.target} --write {path}'"
        )
    doc, _ = _read_template(path)
    term = Term()
    problems: list[str] = []
    want_kind = _KIND[component.kind]
    if doc.get("kind") != want_kind:
        problems.append(
            f"kind: the template is an {doc.get('kind')}, but {component.described} needs an "
            f"{want_kind}"
        )
    raw_spec = doc.get("spec")
    spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
    modes = spec.get("supportedModes") or []
    allowed = _MODES[component.kind]
    wrong = [m for m in modes if m not in allowed]
    if wrong:
        problems.append(
            f"spec.supportedModes: {component.described} cannot run as {', '.join(wrong)} "
            f"(it runs as {' or '.join(allowed)})"
        )
    generated = _schemas(component)
    for key, value in generated.items():
        if key == "secretSchema" and not value and not spec.get(key):
            continue
        if key not in spec:
            problems.append(f"spec.{key}: in the code, missing from the template")
        else:
            problems.extend(diff(spec[key], value, f"spec.{key}"))
    if problems:
        term.bad(f"{path} and {component.path} disagree:")
        for line in problems:
            term.line(f"  {line}")
        term.line(
            f"update the template from the code with: bubu schema {args.target} --write {path}"
        )
        return 1
    term.ok(f"{path} matches {component.described}")
    return 0
