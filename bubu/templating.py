"""Evaluate BubuStack templates in your own code: ``bubu.templating``.

The operator resolves the templates of a Story (``with`` blocks, ``if`` conditions) before a
step runs, and bubu resolves the ones left in a step's inputs and config. An engram that takes
templates from its own users (a filter expression in its config, a message to render per
packet) evaluates them with :class:`Evaluator`: the same engine, functions and errors, and the
Go SDK's ``cel.Evaluator`` methods under Python names (docs/templates.md#evaluator).

* :class:`Evaluator` - ``evaluate_expression``, ``evaluate_condition``, ``resolve_template``;
* :func:`extract_expression` - the ``{"$bubuTemplate": ..., "$bubuTemplateVars": ...}``
  wrapper of a value, as an :class:`Expression`.

Light to import: the engine loads with this module, not with ``import bubu``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from bubu._templating import (
    TEMPLATE_KEY,
    TEMPLATE_VARS_KEY,
    TemplateConfig,
    _parse_json_value,
    format_go_duration,
)
from bubu._templating import Evaluator as _Engine
from bubu._templating._funcs import _go_trim_space

__all__ = ["Evaluator", "Expression", "extract_expression"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Expression:
    """A template wrapper found in a value (Go ``cel.Expression``).

    Attributes:
        expr: the template text (``$bubuTemplate``).
        vars: the extra variables bound for it (``$bubuTemplateVars``), or None.
    """

    expr: str
    vars: dict[str, Any] | None = None


def extract_expression(value: Any) -> Expression | None:
    """The template wrapper ``value`` is, or None (Go ``cel.ExtractExpression``).

    A wrapper is a mapping whose ``$bubuTemplate`` is a non-blank string; its
    ``$bubuTemplateVars`` count only when they are a mapping.

    >>> extract_expression({"$bubuTemplate": "inputs.n", "$bubuTemplateVars": {"k": 1}})
    Expression(expr='inputs.n', vars={'k': 1})
    >>> extract_expression("inputs.n") is None
    True
    """
    if not isinstance(value, Mapping):
        return None
    expr = value.get(TEMPLATE_KEY)
    if not isinstance(expr, str) or not _go_trim_space(expr):
        return None
    variables = value.get(TEMPLATE_VARS_KEY)
    return Expression(expr, dict(variables) if isinstance(variables, Mapping) else None)


class Evaluator:
    """Evaluates templates with the engine bubu resolves inputs with (Go ``cel.Evaluator``).

    Templates are Go ``text/template`` with Sprig and BubuStack's functions; the roots are
    ``inputs``, ``steps`` and ``packet`` and the leading dot is optional
    (docs/templates.md#templates). Evaluation is synchronous and CPU-bound: call it directly
    from a coroutine for small templates, or through ``asyncio.to_thread`` for big ones.

    Args:
        timeout: seconds one evaluation may take; 0 (the default) sets no limit.
        max_output_bytes: the largest rendered output allowed; 0 sets no limit.
        deterministic: refuse ``now``, ``random`` and the other functions whose result changes
            from one call to the next (what trigger keys use).
        logger: where to log each evaluation as the Go SDK does (``Template evaluation
            started`` and ``succeeded`` at DEBUG, ``Template evaluation failed`` at ERROR, with
            ``expression``, ``type`` and ``duration``); None logs nothing.

    Raises:
        bubu.errors.TemplateError: a negative ``timeout`` or ``max_output_bytes``.

    Example::

        from bubu.templating import Evaluator

        evaluator = Evaluator(timeout=0.25)
        evaluator.evaluate_expression("add inputs.n 3", {"inputs": {"n": 4}})  # 7
        evaluator.evaluate_condition("{{ gt (len inputs.items) 0 }}", {"inputs": {"items": []}})
    """

    __slots__ = ("_engine", "_logger")

    def __init__(
        self,
        *,
        timeout: float = 0.0,
        max_output_bytes: int = 0,
        deterministic: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        self._engine = _Engine(
            TemplateConfig(
                evaluation_timeout=timeout,
                max_output_bytes=max_output_bytes,
                deterministic=deterministic,
            )
        )
        self._logger = logger

    def __repr__(self) -> str:
        config = self._engine.config
        return (
            f"Evaluator(timeout={config.evaluation_timeout!r}, "
            f"max_output_bytes={config.max_output_bytes!r}, "
            f"deterministic={config.deterministic!r})"
        )

    def evaluate_expression(
        self, expression: str, variables: Mapping[str, Any] | None = None
    ) -> Any:
        """Evaluate one expression and return its value (Go ``EvaluateExpression``).

        A bare expression (no ``{{``) is wrapped in ``{{ }}``. A result that is JSON text is
        decoded, so numbers, booleans, lists and objects come back typed; other text comes
        back as the string. An empty expression gives ``""``.

        Raises:
            bubu.errors.TemplateError: the template does not parse or fails to run (Go's
                text); ``TemplateBlockedError`` / ``OffloadedDataError`` for the two special
                cases of docs/templates.md#templates.
        """
        text = _go_trim_space(expression)
        if not text:
            return ""
        if "{{" not in text:
            text = "{{ " + text + " }}"
        value = self._run(
            "expression", text, lambda: self._resolve({"value": text}, variables)["value"]
        )
        if isinstance(value, str):
            decoded, result = _parse_json_value(value)
            if decoded:
                return result
        return value

    def evaluate_condition(
        self, expression: str, variables: Mapping[str, Any] | None = None
    ) -> bool:
        """Evaluate a condition (Go ``EvaluateCondition``).

        Unlike :meth:`evaluate_expression`, the template keeps its ``{{ }}``: text outside
        them is the result. An empty expression is true (no filter passes everything). The
        result must be a bool or one of the strings ``true``/``1``/``yes``/``y`` or
        ``false``/``0``/``no``/``n``/``""`` (any case, spaces around ignored).

        Raises:
            bubu.errors.TemplateError: the template fails, or its result is not a boolean.
        """
        return self._run(
            "condition", expression, lambda: self._engine.evaluate_condition(expression, variables)
        )

    def resolve_template(self, template: Any, variables: Mapping[str, Any] | None = None) -> Any:
        """Resolve the templates in ``template`` (Go ``ResolveTemplate``).

        A mapping has every template inside it resolved (nested mappings and lists, and
        ``$bubuTemplate`` wrappers) and comes back a new dict; a string is rendered, a
        single-action template such as ``{{ inputs.n }}`` keeping its value's type; anything
        else comes back as it is.

        Raises:
            bubu.errors.TemplateError: a template inside fails.
        """
        if isinstance(template, Mapping):
            return self._run("template", "<object>", lambda: self._resolve(template, variables))
        if isinstance(template, str):
            return self._run(
                "template", template, lambda: self._resolve({"value": template}, variables)["value"]
            )
        if self._logger is not None:
            kind = f"<{type(template).__name__}>"
            self._log(logging.DEBUG, "Template evaluation started", kind, "template")
            self._log(logging.DEBUG, "Template evaluation succeeded", kind, "template", 0.0)
        return template

    # internals ----------------------------------------------------------------------------------

    def _resolve(self, value: Mapping[str, Any], variables: Mapping[str, Any] | None) -> Any:
        # Go runs all three through ResolveWithInputs, which keeps the top level an object (the
        # engine copies both mappings; the caller's stay as they are).
        return self._engine.resolve_with_inputs(value, variables)

    def _run(self, kind: str, expression: str, evaluate: Callable[[], _T]) -> _T:
        if self._logger is None:
            return evaluate()
        self._log(logging.DEBUG, "Template evaluation started", expression, kind)
        started = time.monotonic()
        try:
            result = evaluate()
        except Exception as exc:
            self._log(
                logging.ERROR,
                "Template evaluation failed",
                expression,
                kind,
                time.monotonic() - started,
                error=str(exc),
            )
            raise
        self._log(
            logging.DEBUG,
            "Template evaluation succeeded",
            expression,
            kind,
            time.monotonic() - started,
        )
        return result

    def _log(
        self,
        level: int,
        message: str,
        expression: str,
        kind: str,
        seconds: float | None = None,
        **fields: str,
    ) -> None:
        assert self._logger is not None
        extra: dict[str, Any] = {"expression": expression, "type": kind, **fields}
        if seconds is not None:
            extra["duration"] = format_go_duration(seconds)
        self._logger.log(level, message, extra=extra)
