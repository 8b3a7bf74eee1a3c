"""Execution of a parsed template with Go ``text/template`` semantics (``missingkey=zero``).

A port in behaviour, not in code, of Go's executor: how fields, variables, pipelines and
function arguments are evaluated, how a missing key prints ``<no value>``, which type
errors a call raises, and the error text ``template: bubu:1:3: executing "bubu" at <.x>: ...``.
Function signatures carry Go parameter types (``_funcs.GoFunc``) so argument conversion and
its errors match Go's reflection-based calls.

Limits (docs/templates.md "Limits"): the output cap and the deadline are checked on every
write, every range iteration and every call; nested ``{{template}}`` calls stop at depth 100.
"""

from __future__ import annotations

import time
from typing import Any

from bubu._templating import _parse as P
from bubu._templating._fmt import FormatError, sprint
from bubu._templating._funcs import (
    ANY,
    NOT_NILABLE,
    GoCallError,
    GoFunc,
    assignable,
    call_method,
    zero_of,
)
from bubu._templating._values import (
    NOVALUE,
    GoInt,
    GoInt64,
    GoStringMap,
    GoStrings,
    go_type,
    is_int,
    truth,
)

__all__ = ["ExecError", "LimitError", "execute"]

MAX_TEMPLATE_DEPTH = 100


class ExecError(Exception):
    """An execution error; ``str`` is Go's text, ``position`` the ``line:col`` at fault."""

    def __init__(self, message: str, position: str | None = None) -> None:
        super().__init__(message)
        self.position = position


class LimitError(Exception):
    """The output cap or the deadline was hit (Go reports these without the template prefix)."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Writer:
    __slots__ = ("deadline", "limit", "parts", "size", "timeout_text")

    def __init__(self, limit: int, deadline: float | None, timeout_text: str) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.deadline = deadline
        self.timeout_text = timeout_text

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise LimitError(self.timeout_text)

    def write(self, text: str) -> None:
        self.check_deadline()
        n = len(text.encode("utf-8", "surrogatepass")) if not text.isascii() else len(text)
        if self.limit > 0 and self.size + n > self.limit:
            raise LimitError(
                "template output exceeds max bytes "
                f"(current={self.size}, writing={n}, max={self.limit})"
            )
        self.parts.append(text)
        self.size += n


_MISSING = object()  # Go's missingVal: "no final (piped) argument"


class _State:
    def __init__(
        self, tree: P.Tree, funcs: dict[str, GoFunc], writer: _Writer, depth: int = 0
    ) -> None:
        self.tree = tree
        self.funcs = funcs
        self.w = writer
        self.node: P.Node | None = None
        self.vars: list[tuple[str, Any, bool]] = []
        self.depth = depth

    # errors ------------------------------------------------------------------------------------

    def errorf(self, message: str) -> None:
        if self.node is None:
            raise ExecError(f"template: {P.NAME}: {message}")
        loc = P.location(self.tree.text, self.node.pos)
        context = str(self.node)
        raise ExecError(
            f'template: {P.NAME}:{loc}: executing "{P.NAME}" at <{context}>: {message}', loc
        )

    # variables ---------------------------------------------------------------------------------

    def push(self, name: str, value: Any, iface: bool = False) -> None:
        self.vars.append((name, value, iface))

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value, False)
                return
        self.errorf(f"undefined variable: {name}")

    def var_value(self, name: str) -> tuple[Any, bool]:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                return self.vars[i][1], self.vars[i][2]
        self.errorf(f"undefined variable: {name}")
        raise AssertionError

    # walking ----------------------------------------------------------------------------------

    def walk(self, dot: Any, node: P.Node, dot_iface: bool = False) -> None:
        self.node = node
        if isinstance(node, P.ActionNode):
            value = self.eval_pipeline(dot, node.pipe, dot_iface)
            if not node.pipe.decl:
                self.print_value(node, value)
        elif isinstance(node, P.TextNode):
            if node.text:
                self.w.write(node.text)
        elif isinstance(node, P.ListNode):
            for child in node.nodes:
                self.walk(dot, child, dot_iface)
        elif isinstance(node, P.IfNode | P.WithNode):
            self.walk_if_or_with(node, dot, dot_iface)
        elif isinstance(node, P.RangeNode):
            self.walk_range(node, dot, dot_iface)
        elif isinstance(node, P.BreakNode):
            raise _Break
        elif isinstance(node, P.ContinueNode):
            raise _Continue
        elif isinstance(node, P.TemplateNode):
            self.walk_template(node, dot, dot_iface)
        else:  # pragma: no cover - the parser builds no other nodes
            self.errorf(f"unknown node: {node}")

    def walk_if_or_with(self, node: P.BranchNode, dot: Any, dot_iface: bool) -> None:
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe, dot_iface)
            if truth(value):
                if isinstance(node, P.WithNode):
                    self.walk(value, node.list)
                else:
                    self.walk(dot, node.list, dot_iface)
            elif node.else_list is not None:
                self.walk(dot, node.else_list, dot_iface)
        finally:
            del self.vars[mark:]

    def walk_range(self, node: P.RangeNode, dot: Any, dot_iface: bool) -> None:
        self.node = node
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe, dot_iface)
            inner = len(self.vars)
            decl = node.pipe.decl

            def one(index: Any, elem: Any, elem_iface: bool) -> None:
                self.w.check_deadline()
                if decl:
                    if node.pipe.is_assign:
                        self.set_var(decl[0].ident[0], index if len(decl) > 1 else elem)
                    else:
                        name, _, _ = self.vars[-1]
                        self.vars[-1] = (name, elem, elem_iface)
                if len(decl) > 1:
                    if node.pipe.is_assign:
                        self.set_var(decl[1].ident[0], elem)
                    else:
                        name, _, _ = self.vars[-2]
                        self.vars[-2] = (name, index, False)
                try:
                    self.walk(elem, node.list, elem_iface)
                except _Continue:
                    pass
                finally:
                    del self.vars[inner:]

            ran = False
            try:
                if is_int(value):  # every Go integer kind ranges (Go 1.22), a byte included
                    if len(decl) > 1:
                        self.errorf(
                            f"can't use {sprint(value)} to iterate over more than one variable"
                        )
                    for i in range(int(value)):
                        ran = True
                        one(NOVALUE, type(value)(i), False)
                elif isinstance(value, list | tuple):
                    iface = type(value) is not GoStrings
                    for i, item in enumerate(value):
                        ran = True
                        one(GoInt(i), item, iface)
                elif isinstance(value, dict):
                    iface = type(value) is not GoStringMap
                    for key in sorted(value):
                        ran = True
                        one(key, value[key], iface)
                elif value is NOVALUE or value is None:
                    pass
                else:
                    self.errorf(f"range can't iterate over {sprint(value)}")
            except _Break:
                return
            if not ran and node.else_list is not None:
                self.walk(dot, node.else_list, dot_iface)
        finally:
            del self.vars[mark:]

    def walk_template(self, node: P.TemplateNode, dot: Any, dot_iface: bool) -> None:
        self.node = node
        body = self.tree.defined.get(node.name)
        if body is None:
            self.errorf(f"template {P._go_quote_q(node.name)} not defined")
            return
        if self.depth >= MAX_TEMPLATE_DEPTH:
            self.errorf(f"exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})")
        new_dot = self.eval_pipeline(dot, node.pipe, dot_iface) if node.pipe else NOVALUE
        state = _State(self.tree, self.funcs, self.w, self.depth + 1)
        state.push("$", new_dot)
        state.walk(new_dot, body)

    def print_value(self, node: P.Node, value: Any) -> None:
        self.node = node
        if value is NOVALUE:
            self.w.write("<no value>")
            return
        try:
            text = sprint(value)
        except FormatError as exc:
            self.errorf(str(exc))
            return
        self.w.write(text)

    # evaluation --------------------------------------------------------------------------------

    def eval_pipeline(self, dot: Any, pipe: P.PipeNode | None, dot_iface: bool = False) -> Any:
        if pipe is None:
            return NOVALUE
        self.node = pipe
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value, dot_iface)
            if value is None:  # a nil interface{} unwraps to the invalid value
                value = NOVALUE
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.ident[0], value)
            else:
                self.push(var.ident[0], value)
        return value

    def not_a_function(self, args: list[P.Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: P.CommandNode, final: Any, dot_iface: bool) -> Any:
        first = cmd.args[0]
        if isinstance(first, P.FieldNode):
            return self.eval_field_node(dot, first, cmd.args, final, dot_iface)[0]
        if isinstance(first, P.ChainNode):
            return self.eval_chain_node(dot, first, cmd.args, final, dot_iface)[0]
        if isinstance(first, P.IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final, dot_iface)
        if isinstance(first, P.PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first, dot_iface)
        if isinstance(first, P.VariableNode):
            return self.eval_variable_node(dot, first, cmd.args, final, dot_iface)[0]
        self.node = first
        self.not_a_function(cmd.args, final)
        if isinstance(first, P.BoolNode):
            return first.value
        if isinstance(first, P.DotNode):
            return dot
        if isinstance(first, P.NilNode):
            self.errorf("nil is not a command")
        if isinstance(first, P.NumberNode):
            return self.ideal_constant(first)
        if isinstance(first, P.StringNode):
            return first.text
        self.errorf(f"can't evaluate command {P._go_quote_q(str(first))}")
        raise AssertionError

    def ideal_constant(self, n: P.NumberNode) -> Any:
        self.node = n
        text = n.text
        is_hex_int = (
            len(text) > 2
            and text[0] == "0"
            and text[1] in "xX"
            and not any(c in text for c in "pP")
        )
        if (
            n.is_float
            and not is_hex_int
            and not text.startswith("'")
            and any(c in text for c in ".eEpP")
        ):
            return n.float_value
        if n.is_int:
            if not -(2**63) <= n.int_value < 2**63:
                self.errorf(f"{text} overflows int")
            return GoInt(n.int_value)
        if n.is_uint:
            self.errorf(f"{text} overflows int")
        return NOVALUE

    def eval_field_node(
        self, dot: Any, field: P.FieldNode, args: list[P.Node], final: Any, dot_iface: bool
    ) -> tuple[Any, bool]:
        self.node = field
        return self.eval_field_chain(dot, dot, dot_iface, field, field.ident, args, final)

    def eval_chain_node(
        self, dot: Any, chain: P.ChainNode, args: list[P.Node], final: Any, dot_iface: bool
    ) -> tuple[Any, bool]:
        self.node = chain
        if isinstance(chain.node, P.NilNode):
            self.errorf(f"indirection through explicit nil in {chain}")
        receiver = self.eval_arg(dot, None, chain.node, dot_iface)
        return self.eval_field_chain(dot, receiver, False, chain, chain.fields, args, final)

    def eval_variable_node(
        self, dot: Any, var: P.VariableNode, args: list[P.Node], final: Any, dot_iface: bool
    ) -> tuple[Any, bool]:
        self.node = var
        value, iface = self.var_value(var.ident[0])
        if len(var.ident) == 1:
            self.not_a_function(args, final)
            return value, iface
        return self.eval_field_chain(dot, value, iface, var, var.ident[1:], args, final)

    def eval_field_chain(  # noqa: PLR0917 - mirrors Go's evalFieldChain
        self,
        dot: Any,
        receiver: Any,
        iface: bool,
        node: P.Node,
        ident: list[str],
        args: list[P.Node],
        final: Any,
    ) -> tuple[Any, bool]:
        for name in ident[:-1]:
            receiver, iface = self.eval_field(dot, name, node, [], _MISSING, receiver, iface)
        return self.eval_field(dot, ident[-1], node, args, final, receiver, iface)

    def eval_field(  # noqa: PLR0917 - mirrors Go's evalField
        self,
        dot: Any,
        name: str,
        node: P.Node,
        args: list[P.Node],
        final: Any,
        receiver: Any,
        iface: bool,
    ) -> tuple[Any, bool]:
        if receiver is NOVALUE:
            return NOVALUE, False
        if receiver is None:
            self.errorf(f"nil pointer evaluating interface {{}}.{name}")
        method = call_method(receiver, name)
        if method is not None:
            return self.eval_call(dot, method, node, name, args, final, dot_iface=False), False
        has_args = len(args) > 1 or final is not _MISSING
        if isinstance(receiver, dict):
            if has_args:
                self.errorf(f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name], type(receiver) is not GoStringMap
            return ("" if type(receiver) is GoStringMap else None), True
        static = "interface {}" if iface else go_type(receiver)
        self.errorf(f"can't evaluate field {name} in type {static}")
        raise AssertionError

    def eval_function(  # noqa: PLR0917 - mirrors Go's evalFunction
        self,
        dot: Any,
        node: P.IdentifierNode,
        cmd: P.Node,
        args: list[P.Node],
        final: Any,
        dot_iface: bool,
    ) -> Any:
        self.node = node
        fn = self.funcs.get(node.ident)
        if fn is None:
            self.errorf(f"{P._go_quote_q(node.ident)} is not a defined function")
            raise AssertionError
        return self.eval_call(dot, fn, cmd, node.ident, args, final, dot_iface)

    def eval_call(  # noqa: PLR0917 - mirrors Go's evalCall
        self,
        dot: Any,
        fn: GoFunc,
        node: P.Node,
        name: str,
        args: list[P.Node],
        final: Any,
        dot_iface: bool,
    ) -> Any:
        self.w.check_deadline()
        args = args[1:] if args else []
        num_in = len(args) + (0 if final is _MISSING else 1)
        params = fn.params
        if fn.variadic is not None:
            if num_in < len(params):
                self.errorf(
                    f"wrong number of args for {name}: want at least {len(params)} got {len(args)}"
                )
        elif num_in != len(params):
            self.errorf(f"wrong number of args for {name}: want {len(params)} got {num_in}")
        if fn.builtin and name in ("and", "or"):
            value: Any = NOVALUE
            for arg in args:
                value = self.eval_arg(dot, ANY, arg, dot_iface)
                if truth(value) == (name == "or"):
                    return value
            if final is not _MISSING:
                value = final
            return value
        argv: list[Any] = []
        if fn.builtin and name == "call":
            # Go passes the callee's expression text for its error message.
            argv.append(str(args[0]) if args else sprint(final))
        for i, arg in enumerate(args):
            typ = params[i] if i < len(params) else fn.variadic
            argv.append(self.eval_arg(dot, typ, arg, dot_iface))
        if final is not _MISSING:
            if fn.variadic is not None and num_in - 1 >= len(params):
                typ = fn.variadic
            else:
                typ = params[num_in - 1]
            argv.append(self.validate_type(final, typ, False))
        try:
            result = fn.impl(*argv)
        except GoCallError as exc:
            self.node = node
            self.errorf(f"error calling {name}: {exc}")
        except FormatError as exc:
            self.node = node
            self.errorf(str(exc))
        except RecursionError:
            self.node = node
            self.errorf(f"error calling {name}: value nested too deeply")
        return result

    def validate_type(self, value: Any, typ: str | None, iface: bool) -> Any:
        if value is NOVALUE:
            if typ is None or typ == ANY:
                return None if typ == ANY else NOVALUE
            zero = zero_of(typ)
            if zero is not NOT_NILABLE:
                return zero
            self.errorf(f"invalid value; expected {typ}")
        if typ is None or typ == ANY:
            return value
        if value is None:  # a nil interface{} is assignable to no concrete type
            self.errorf(f"wrong type for value; expected {typ}; got interface {{}}")
        if not assignable(value, typ):
            self.errorf(f"wrong type for value; expected {typ}; got {go_type(value)}")
        return value

    def eval_arg(self, dot: Any, typ: str | None, n: P.Node, dot_iface: bool) -> Any:
        self.node = n
        if isinstance(n, P.DotNode):
            return self.validate_type(dot, typ, dot_iface)
        if isinstance(n, P.NilNode):
            if typ is None or typ == ANY or typ in _NILABLE:
                return None if typ == ANY else zero_of(typ or ANY)
            self.errorf(f"cannot assign nil to {typ}")
        if isinstance(n, P.FieldNode):
            value, iface = self.eval_field_node(dot, n, [n], _MISSING, dot_iface)
            return self.validate_type(value, typ, iface)
        if isinstance(n, P.VariableNode):
            value, iface = self.eval_variable_node(dot, n, [], _MISSING, dot_iface)
            return self.validate_type(value, typ, iface)
        if isinstance(n, P.PipeNode):
            return self.validate_type(self.eval_pipeline(dot, n, dot_iface), typ, False)
        if isinstance(n, P.IdentifierNode):
            value = self.eval_function(dot, n, n, [], _MISSING, dot_iface)
            return self.validate_type(value, typ, False)
        if isinstance(n, P.ChainNode):
            value, iface = self.eval_chain_node(dot, n, [], _MISSING, dot_iface)
            return self.validate_type(value, typ, iface)
        return self.eval_literal(typ, n)

    def eval_literal(self, typ: str | None, n: P.Node) -> Any:
        if typ == "bool":
            if isinstance(n, P.BoolNode):
                return n.value
            self.errorf(f"expected bool; found {n}")
        if typ == "string":
            if isinstance(n, P.StringNode):
                return n.text
            self.errorf(f"expected string; found {n}")
        if typ in ("int", "int64"):
            if isinstance(n, P.NumberNode) and n.is_int:
                return GoInt(n.int_value) if typ == "int" else GoInt64(n.int_value)
            self.errorf(f"expected integer; found {n}")
        if typ == "float64":
            if isinstance(n, P.NumberNode) and n.is_float:
                return n.float_value
            self.errorf(f"expected float; found {n}")
        if typ is None or typ == ANY:
            if isinstance(n, P.BoolNode):
                return n.value
            if isinstance(n, P.NumberNode):
                return self.ideal_constant(n)
            if isinstance(n, P.StringNode):
                return n.text
        self.errorf(f"can't handle {n} for arg of type {typ}")
        raise AssertionError


_NILABLE = frozenset(
    {
        "map[string]interface {}",
        "[]interface {}",
        "[]string",
        "map[string]string",
        "*semver.Version",
    }
)


def execute(
    tree: P.Tree,
    data: Any,
    funcs: dict[str, GoFunc],
    *,
    max_output: int = 0,
    deadline: float | None = None,
    timeout_text: str = "",
) -> str:
    """Run ``tree`` on ``data``; returns the output text.

    Raises:
        ExecError: Go's execution error text.
        LimitError: the output cap or the deadline.
    """
    writer = _Writer(max_output, deadline, timeout_text)
    state = _State(tree, funcs, writer)
    state.push("$", data)
    try:
        state.walk(data, tree.root)
    except RecursionError:
        raise ExecError(f"template: {P.NAME}: template nested too deeply") from None
    return "".join(writer.parts)
