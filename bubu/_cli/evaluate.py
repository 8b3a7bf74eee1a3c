"""``bubu eval``: try a template against variables, with the engine the SDK resolves inputs with.

``bubu eval '{{ add inputs.n 1 }}' --inputs '{"n": 4}'`` prints the value as the Go SDK's
JSON encoding writes it (``5``); a Story author checks a ``with`` value before a run needs it.

* the default resolves the argument as a value in a step's ``with`` block is resolved: a
  string template (one action keeps its type), or a JSON object or array given with
  ``--json``, every template inside resolved;
* ``--expression`` is ``Evaluator.evaluate_expression`` (a bare expression is wrapped in
  ``{{ }}`` and a JSON result decoded); ``--condition`` is ``evaluate_condition`` and prints
  ``true`` or ``false``.

Variables: ``--vars`` (an object with ``inputs``, ``steps``, ``packet``) and the shortcuts
``--inputs`` and ``--steps`` (each ``JSON`` or ``@file``). A template error is one line on
stderr with Go's text and exit code 1; bad options exit 2 (docs/cli.md#eval).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bubu._cli import UsageError, load_json_arg

__all__ = ["add_eval_arguments", "cmd_eval"]


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bubu eval``."""
    parser.add_argument("template", help="the template, e.g. '{{ inputs.name }}'")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--expression",
        action="store_true",
        help="evaluate as an expression: wrap a bare one in {{ }}, decode a JSON result",
    )
    mode.add_argument(
        "--condition", action="store_true", help="evaluate as a condition; prints true or false"
    )
    mode.add_argument(
        "--json",
        action="store_true",
        help="the template is a JSON value (object, array...) whose templates are resolved",
    )
    parser.add_argument(
        "--vars", metavar="JSON|@FILE", help="all variables: {inputs, steps, packet}"
    )
    parser.add_argument("--inputs", metavar="JSON|@FILE", help="the variables' inputs")
    parser.add_argument("--steps", metavar="JSON|@FILE", help="the variables' steps")
    parser.add_argument(
        "--deterministic", action="store_true", help="refuse now, random and the like"
    )
    parser.add_argument(
        "--timeout", type=float, default=0.0, metavar="SECONDS", help="0: no limit (default)"
    )


def _variables(args: argparse.Namespace) -> dict[str, Any]:
    variables = load_json_arg("--vars", args.vars)
    for option, key in (("--inputs", "inputs"), ("--steps", "steps")):
        value = getattr(args, key)
        if value is not None:
            variables[key] = load_json_arg(option, value)
    return variables


def cmd_eval(args: argparse.Namespace) -> int:
    """Run ``bubu eval``; returns the exit code."""
    from bubu._templating._gojson import GoJSONError, go_json
    from bubu.errors import TemplateError
    from bubu.templating import Evaluator

    variables = _variables(args)
    template: Any = args.template
    if args.json:
        try:
            template = json.loads(args.template)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"template: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
    if args.timeout < 0:
        raise UsageError("--timeout: must be >= 0")
    evaluator = Evaluator(timeout=args.timeout, deterministic=args.deterministic)
    try:
        if args.condition:
            result: Any = evaluator.evaluate_condition(template, variables)
        elif args.expression:
            result = evaluator.evaluate_expression(template, variables)
        else:
            result = evaluator.resolve_template(template, variables)
        text = go_json(result, escape_html=False)
    except (TemplateError, GoJSONError) as exc:
        print(f"bubu: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0
