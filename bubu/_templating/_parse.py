"""Lexer and parser for Go ``text/template`` syntax (docs/templates.md "Syntax").

The grammar, the token rules (trim markers, comments, number literals, raw strings) and the
parse error texts are Go's, so a template that Go refuses is refused here with the same
message (``template: bubu:1: function "nope" not defined``). ``{{define}}``, ``{{block}}`` and
``{{template}}`` parse as in Go and run against the templates defined in the same text.

Positions are character offsets into the text; ``location`` turns one into Go's
``line:column`` (the column counts UTF-8 bytes, as Go's does).
"""

from __future__ import annotations

import ast
import unicodedata
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ActionNode",
    "BoolNode",
    "BreakNode",
    "ChainNode",
    "CommandNode",
    "ContinueNode",
    "DotNode",
    "FieldNode",
    "IdentifierNode",
    "IfNode",
    "ListNode",
    "NilNode",
    "Node",
    "NumberNode",
    "ParseError",
    "PipeNode",
    "RangeNode",
    "StringNode",
    "TemplateNode",
    "TextNode",
    "Tree",
    "VariableNode",
    "WithNode",
    "location",
    "parse",
]

NAME = "bubu"
MAX_PAREN_DEPTH = 100


class ParseError(Exception):
    """A template that does not parse; ``str`` is Go's message, ``line`` the line number."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def location(text: str, pos: int) -> str:
    """Go's ``ErrorContext`` location ``line:col`` (col = bytes since the line start)."""
    before = text[:pos]
    nl = before.rfind("\n")
    col = len(before[nl + 1 :].encode("utf-8", "surrogatepass"))
    return f"{before.count(chr(10)) + 1}:{col}"


# --- tokens ------------------------------------------------------------------------------------

ERROR = "error"
BOOL = "bool"
CHAR = "char"
CHAR_CONST = "charconst"
COMMENT = "comment"
COMPLEX = "complex"
ASSIGN = "assign"
DECLARE = "declare"
EOF = "EOF"
FIELD = "field"
IDENT = "identifier"
LDELIM = "leftdelim"
LPAREN = "leftparen"
NUMBER = "number"
PIPE = "pipe"
RAWSTRING = "rawstring"
RDELIM = "rightdelim"
RPAREN = "rightparen"
SPACE = "space"
STRING = "string"
TEXT = "text"
VARIABLE = "variable"
# keywords
BLOCK = "block"
BREAK = "break"
CONTINUE = "continue"
DOT = "dot"
DEFINE = "define"
ELSE = "else"
END = "end"
IF = "if"
NIL = "nil"
RANGE = "range"
TEMPLATE = "template"
WITH = "with"

_KEYWORDS = {
    ".": DOT,
    "block": BLOCK,
    "break": BREAK,
    "continue": CONTINUE,
    "define": DEFINE,
    "else": ELSE,
    "end": END,
    "if": IF,
    "range": RANGE,
    "nil": NIL,
    "template": TEMPLATE,
    "with": WITH,
}
_KEYWORD_TYPES = frozenset(_KEYWORDS.values())


@dataclass(slots=True)
class Item:
    typ: str
    pos: int
    val: str
    line: int

    def __str__(self) -> str:
        if self.typ == EOF:
            return "EOF"
        if self.typ == ERROR:
            return self.val
        if self.typ in _KEYWORD_TYPES:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return _go_quote_q(self.val[:10]) + "..."
        return _go_quote_q(self.val)


def _go_quote_q(s: str) -> str:
    from bubu._templating._fmt import go_quote

    return go_quote(s)


_SPACE = " \t\r\n"


def _is_space(ch: str) -> bool:
    return ch in _SPACE and ch != ""


def _is_alnum(ch: str) -> bool:
    if ch == "_":
        return True
    if not ch:
        return False
    if ch.isascii():
        return ch.isalnum()
    cat = unicodedata.category(ch)
    return cat.startswith("L") or cat == "Nd"


class _Lexer:
    """Go's state-machine lexer, producing every item up front (stops after an error)."""

    def __init__(self, text: str) -> None:
        self.input = text
        self.pos = 0
        self.start = 0
        self.line = 1
        self.start_line = 1
        self.paren_depth = 0
        self.items: list[Item] = []
        self.done = False

    # helpers -----------------------------------------------------------------------------------

    def next(self) -> str:
        if self.pos >= len(self.input):
            self.pos += 1  # mark EOF; backup() undoes it
            return ""
        ch = self.input[self.pos]
        self.pos += 1
        if ch == "\n":
            self.line += 1
        return ch

    def backup(self) -> None:
        self.pos -= 1
        if self.pos < len(self.input) and self.input[self.pos] == "\n":
            self.line -= 1

    def peek(self) -> str:
        return self.input[self.pos] if self.pos < len(self.input) else ""

    def emit(self, typ: str) -> None:
        self.items.append(Item(typ, self.start, self.input[self.start : self.pos], self.start_line))
        self.start = self.pos
        self.start_line = self.line

    def ignore(self) -> None:
        self.line += self.input.count("\n", self.start, self.pos)
        self.start = self.pos
        self.start_line = self.line

    def error(self, message: str) -> None:
        self.items.append(Item(ERROR, self.start, message, self.start_line))
        self.done = True

    def at_right_delim(self) -> tuple[bool, bool]:
        rest = self.input[self.pos :]
        if len(rest) >= 2 and _is_space(rest[0]) and rest[1] == "-" and rest[2:].startswith("}}"):
            return True, True
        if rest.startswith("}}"):
            return True, False
        return False, False

    def at_terminator(self) -> bool:
        ch = self.peek()
        if ch == "" or _is_space(ch) or ch in ".,|:)(":
            return True
        return self.input.startswith("}}", self.pos)

    # states -------------------------------------------------------------------------------------

    def run(self) -> list[Item]:
        inside = False
        while not self.done:
            inside = self.lex_inside_action() if inside else self.lex_text()
        return self.items

    def lex_text(self) -> bool:
        x = self.input.find("{{", self.pos)
        if x >= 0:
            if x > self.pos:
                self.pos = x
                trim = 0
                after = self.input[x + 2 :]
                if len(after) >= 2 and after[0] == "-" and _is_space(after[1]):
                    chunk = self.input[self.start : self.pos]
                    trim = len(chunk) - len(chunk.rstrip(_SPACE))
                self.pos -= trim
                self.line += self.input.count("\n", self.start, self.pos)
                item = Item(TEXT, self.start, self.input[self.start : self.pos], self.start_line)
                self.start = self.pos
                self.start_line = self.line
                self.pos += trim
                self.ignore()
                if item.val:
                    self.items.append(item)
            return self.lex_left_delim()
        self.pos = len(self.input)
        if self.pos > self.start:
            self.line += self.input.count("\n", self.start, self.pos)
            self.emit(TEXT)
        self.emit(EOF)
        self.done = True
        return False

    def lex_left_delim(self) -> bool:
        self.pos += 2
        rest = self.input[self.pos :]
        trim = len(rest) >= 2 and rest[0] == "-" and _is_space(rest[1])
        after = 2 if trim else 0
        if self.input.startswith("/*", self.pos + after):
            self.pos += after
            self.ignore()
            return self.lex_comment()
        self.items.append(
            Item(LDELIM, self.start, self.input[self.start : self.pos], self.start_line)
        )
        self.start = self.pos
        self.start_line = self.line
        self.pos += after
        self.ignore()
        self.paren_depth = 0
        return True

    def lex_comment(self) -> bool:
        self.pos += 2
        x = self.input.find("*/", self.pos)
        if x < 0:
            self.error("unclosed comment")
            return False
        self.pos = x + 2
        delim, trim = self.at_right_delim()
        if not delim:
            self.error("comment ends before closing delimiter")
            return False
        self.line += self.input.count("\n", self.start, self.pos)
        self.start = self.pos
        self.start_line = self.line
        if trim:
            self.pos += 2
        self.pos += 2
        if trim:
            rest = self.input[self.pos :]
            self.pos += len(rest) - len(rest.lstrip(_SPACE))
        self.ignore()
        return False

    def lex_right_delim(self) -> bool:
        _, trim = self.at_right_delim()
        if trim:
            self.pos += 2
            self.ignore()
        self.pos += 2
        self.emit(RDELIM)
        if trim:
            rest = self.input[self.pos :]
            self.pos += len(rest) - len(rest.lstrip(_SPACE))
            self.ignore()
        return False

    def lex_inside_action(self) -> bool:
        delim, _ = self.at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return self.lex_right_delim()
            self.error("unclosed left paren")
            return False
        ch = self.next()
        if ch == "":
            self.error("unclosed action")
        elif _is_space(ch):
            self.backup()
            self.lex_space()
        elif ch == "=":
            self.emit(ASSIGN)
        elif ch == ":":
            if self.next() != "=":
                self.error("expected :=")
            else:
                self.emit(DECLARE)
        elif ch == "|":
            self.emit(PIPE)
        elif ch == '"':
            self.lex_quote()
        elif ch == "`":
            self.lex_raw_quote()
        elif ch == "$":
            self.lex_variable()
        elif ch == "'":
            self.lex_char()
        elif ch == "." and self.pos < len(self.input) and not self.input[self.pos].isdigit():
            self.lex_field_or_variable(FIELD)
        elif ch in "+-.0123456789":
            self.backup()
            self.lex_number()
        elif _is_alnum(ch):
            self.backup()
            self.lex_identifier()
        elif ch == "(":
            self.paren_depth += 1
            self.emit(LPAREN)
        elif ch == ")":
            self.paren_depth -= 1
            if self.paren_depth < 0:
                self.error("unexpected right paren")
            else:
                self.emit(RPAREN)
        elif ord(ch) < 0x80 and ch.isprintable():
            self.emit(CHAR)
        else:
            self.error(f"unrecognized character in action: {_go_rune(ch)}")
        return True

    def lex_space(self) -> None:
        spaces = 0
        while _is_space(self.peek()):
            self.next()
            spaces += 1
        rest = self.input[self.pos - 1 :]
        if len(rest) >= 2 and _is_space(rest[0]) and rest[1] == "-" and rest[2:].startswith("}}"):
            self.backup()
            if spaces == 1:
                self.lex_right_delim()
                return
        self.emit(SPACE)

    def lex_identifier(self) -> None:
        while True:
            ch = self.next()
            if _is_alnum(ch):
                continue
            self.backup()
            word = self.input[self.start : self.pos]
            if not self.at_terminator():
                self.error(f"bad character {_go_rune(ch)}")
                return
            if word in _KEYWORDS and word != ".":
                self.emit(_KEYWORDS[word])
            elif word[0] == ".":
                self.emit(FIELD)
            elif word in ("true", "false"):
                self.emit(BOOL)
            else:
                self.emit(IDENT)
            return

    def lex_variable(self) -> None:
        if self.at_terminator():
            self.emit(VARIABLE)
            return
        self.lex_field_or_variable(VARIABLE)

    def lex_field_or_variable(self, typ: str) -> None:
        if self.at_terminator():
            self.emit(VARIABLE if typ == VARIABLE else DOT)
            return
        ch = ""
        while True:
            ch = self.next()
            if not _is_alnum(ch):
                self.backup()
                break
        if not self.at_terminator():
            self.error(f"bad character {_go_rune(ch)}")
            return
        self.emit(typ)

    def lex_char(self) -> None:
        while True:
            ch = self.next()
            if ch == "\\":
                nxt = self.next()
                if nxt not in ("", "\n"):
                    continue
                self.error("unterminated character constant")
                return
            if ch in ("", "\n"):
                self.error("unterminated character constant")
                return
            if ch == "'":
                break
        self.emit(CHAR_CONST)

    def lex_number(self) -> None:
        if not self.scan_number():
            self.error(f"bad number syntax: {_go_quote_q(self.input[self.start : self.pos])}")
            return
        if self.peek() in ("+", "-"):
            if not self.scan_number() or self.input[self.pos - 1] != "i":
                self.error(f"bad number syntax: {_go_quote_q(self.input[self.start : self.pos])}")
                return
            self.emit(COMPLEX)
            return
        self.emit(NUMBER)

    def accept(self, valid: str) -> bool:
        ch = self.next()
        if ch and ch in valid:
            return True
        self.backup()
        return False

    def accept_run(self, valid: str) -> None:
        while True:
            ch = self.next()
            if not ch or ch not in valid:
                break
        self.backup()

    def scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if _is_alnum(self.peek()):
            self.next()
            return False
        return True

    def lex_quote(self) -> None:
        while True:
            ch = self.next()
            if ch == "\\":
                nxt = self.next()
                if nxt not in ("", "\n"):
                    continue
                self.error("unterminated quoted string")
                return
            if ch in ("", "\n"):
                self.error("unterminated quoted string")
                return
            if ch == '"':
                break
        self.emit(STRING)

    def lex_raw_quote(self) -> None:
        while True:
            ch = self.next()
            if ch == "":
                self.error("unterminated raw quoted string")
                return
            if ch == "`":
                break
        self.emit(RAWSTRING)


def _go_rune(ch: str) -> str:
    """Go's ``%#U``: ``U+0021 '!'``."""
    if not ch:
        return "U+FFFFFFFFFFFFFFFF"
    code = ord(ch)
    text = f"U+{code:04X}"
    if ch.isprintable():
        text += f" '{ch}'"
    return text


# --- nodes ------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Node:
    pos: int

    def __str__(self) -> str:  # pragma: no cover - every node overrides it
        return type(self).__name__


@dataclass(slots=True, eq=False)
class TextNode(Node):
    text: str

    def __str__(self) -> str:
        return _go_quote_q(self.text)


@dataclass(slots=True, eq=False)
class ListNode(Node):
    nodes: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


@dataclass(slots=True, eq=False)
class DotNode(Node):
    def __str__(self) -> str:
        return "."


@dataclass(slots=True, eq=False)
class NilNode(Node):
    def __str__(self) -> str:
        return "nil"


@dataclass(slots=True, eq=False)
class BoolNode(Node):
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(slots=True, eq=False)
class NumberNode(Node):
    text: str
    is_int: bool = False
    is_float: bool = False
    is_complex: bool = False
    is_uint: bool = False
    int_value: int = 0
    float_value: float = 0.0

    def __str__(self) -> str:
        return self.text


@dataclass(slots=True, eq=False)
class StringNode(Node):
    quoted: str
    text: str

    def __str__(self) -> str:
        return self.quoted


@dataclass(slots=True, eq=False)
class FieldNode(Node):
    ident: list[str]

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


@dataclass(slots=True, eq=False)
class VariableNode(Node):
    ident: list[str]

    def __str__(self) -> str:
        return ".".join(self.ident)


@dataclass(slots=True, eq=False)
class IdentifierNode(Node):
    ident: str

    def __str__(self) -> str:
        return self.ident


@dataclass(slots=True, eq=False)
class ChainNode(Node):
    node: Node
    fields: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        inner = str(self.node)
        if isinstance(self.node, PipeNode):
            inner = "(" + inner + ")"
        return inner + "".join("." + f for f in self.fields)


@dataclass(slots=True, eq=False)
class CommandNode(Node):
    args: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        parts = []
        for arg in self.args:
            text = str(arg)
            parts.append("(" + text + ")" if isinstance(arg, PipeNode) else text)
        return " ".join(parts)


@dataclass(slots=True, eq=False)
class PipeNode(Node):
    line: int = 0
    is_assign: bool = False
    decl: list[VariableNode] = field(default_factory=list)
    cmds: list[CommandNode] = field(default_factory=list)

    def __str__(self) -> str:
        text = ""
        if self.decl:
            text = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return text + " | ".join(str(c) for c in self.cmds)


@dataclass(slots=True, eq=False)
class ActionNode(Node):
    line: int
    pipe: PipeNode

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass(slots=True, eq=False)
class BranchNode(Node):
    line: int
    pipe: PipeNode
    list: ListNode
    else_list: ListNode | None

    keyword = ""

    def __str__(self) -> str:
        text = "{{" + self.keyword + " " + str(self.pipe) + "}}" + str(self.list)
        if self.else_list is not None:
            text += "{{else}}" + str(self.else_list)
        return text + "{{end}}"


@dataclass(slots=True, eq=False)
class IfNode(BranchNode):
    keyword = "if"


@dataclass(slots=True, eq=False)
class RangeNode(BranchNode):
    keyword = "range"


@dataclass(slots=True, eq=False)
class WithNode(BranchNode):
    keyword = "with"


@dataclass(slots=True, eq=False)
class BreakNode(Node):
    line: int

    def __str__(self) -> str:
        return "{{break}}"


@dataclass(slots=True, eq=False)
class ContinueNode(Node):
    line: int

    def __str__(self) -> str:
        return "{{continue}}"


@dataclass(slots=True, eq=False)
class TemplateNode(Node):
    line: int
    name: str
    pipe: PipeNode | None

    def __str__(self) -> str:
        inner = _go_quote_q(self.name)
        if self.pipe is not None:
            inner += " " + str(self.pipe)
        return "{{template " + inner + "}}"


class _End(Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{end}}"


@dataclass(slots=True, eq=False)
class _Else(Node):
    line: int

    def __str__(self) -> str:
        return "{{else}}"


# --- the parser --------------------------------------------------------------------------------


@dataclass(slots=True)
class Tree:
    """A parsed template: ``root`` plus the named templates it defines."""

    text: str
    root: ListNode
    defined: dict[str, ListNode]
    step_refs: set[str] | None = None  # filled on first use by the evaluator


class _Parser:
    def __init__(self, text: str, funcs: frozenset[str] | set[str]) -> None:
        self.text = text
        self.funcs = funcs
        self.items = _Lexer(text).run()
        self.i = 0
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.stack_depth = 0
        self.action_line = 0
        self.defined: dict[str, ListNode] = {}
        self.last = self.items[0]

    # token helpers ----------------------------------------------------------------------------

    def next(self) -> Item:
        item = self.items[self.i] if self.i < len(self.items) else self.items[-1]
        self.i += 1
        self.last = item
        return item

    def backup(self, n: int = 1) -> None:
        self.i -= n

    def peek(self) -> Item:
        item = self.items[self.i] if self.i < len(self.items) else self.items[-1]
        return item

    def next_non_space(self) -> Item:
        while True:
            item = self.next()
            if item.typ != SPACE:
                return item

    def peek_non_space(self) -> Item:
        # As Go: the spaces are consumed, only the non-space token is put back.
        item = self.next_non_space()
        self.backup()
        return item

    def errorf(self, message: str) -> None:
        line = self.last.line
        raise ParseError(f"template: {NAME}:{line}: {message}", line)

    def expect(self, typ: str, context: str) -> Item:
        item = self.next_non_space()
        if item.typ != typ:
            self.unexpected(item, context)
        return item

    def unexpected(self, item: Item, context: str) -> None:
        if item.typ == ERROR:
            extra = ""
            if self.action_line and self.action_line != item.line:
                extra = f" in action started at {NAME}:{self.action_line}"
                if item.val.endswith(" action"):
                    extra = extra[len(" in action") :]
            self.errorf(f"{item}{extra}")
        self.errorf(f"unexpected {item} in {context}")

    # grammar ------------------------------------------------------------------------------------

    def parse(self) -> Tree:
        root = ListNode(self.peek().pos)
        while self.peek().typ != EOF:
            if self.peek().typ == LDELIM:
                start = self.i
                self.next()
                if self.next_non_space().typ == DEFINE:
                    self.parse_definition()
                    continue
                self.i = start
            node = self.text_or_action()
            if isinstance(node, _End | _Else):
                self.errorf(f"unexpected {node}")
            root.nodes.append(node)
        return Tree(self.text, root, self.defined)

    def parse_definition(self) -> None:
        context = "define clause"
        item = self.next_non_space()
        if item.typ not in (STRING, RAWSTRING):
            self.unexpected(item, context)
        name = self.unquote(item.val)
        self.expect(RDELIM, context)
        saved_vars = self.vars
        self.vars = ["$"]
        body, end = self.item_list()
        if not isinstance(end, _End):
            self.errorf(f"unexpected {end} in {context}")
        self.vars = saved_vars
        self.add_definition(name, body)

    def add_definition(self, name: str, body: ListNode) -> None:
        existing = self.defined.get(name)
        if existing is not None and not _is_empty(existing) and not _is_empty(body):
            self.errorf(f"template: multiple definition of template {_go_quote_q(name)}")
        if existing is None or _is_empty(existing):
            self.defined[name] = body

    def item_list(self) -> tuple[ListNode, Node]:
        lst = ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ != EOF:
            node = self.text_or_action()
            if isinstance(node, _End | _Else):
                return lst, node
            lst.nodes.append(node)
        self.errorf("unexpected EOF")
        raise AssertionError  # unreachable

    def text_or_action(self) -> Node:
        item = self.next_non_space()
        if item.typ == TEXT:
            return TextNode(item.pos, item.val)
        if item.typ == LDELIM:
            self.action_line = item.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        if item.typ == COMMENT:
            return TextNode(item.pos, "")
        self.unexpected(item, "input")
        raise AssertionError

    def action(self) -> Node:
        item = self.next_non_space()
        typ = item.typ
        if typ == BLOCK:
            return self.block_control()
        if typ == BREAK:
            return self.break_control(item, "{{break}}", BreakNode)
        if typ == CONTINUE:
            return self.break_control(item, "{{continue}}", ContinueNode)
        if typ == ELSE:
            return self.else_control()
        if typ == END:
            end = self.expect(RDELIM, "end")
            return _End(end.pos)
        if typ == IF:
            return IfNode(*self.parse_control("if"))
        if typ == RANGE:
            return RangeNode(*self.parse_control("range"))
        if typ == TEMPLATE:
            return self.template_control()
        if typ == WITH:
            return WithNode(*self.parse_control("with"))
        self.backup()
        token = self.peek()
        return ActionNode(token.pos, token.line, self.pipeline("command", RDELIM))

    def break_control(self, item: Item, context: str, cls: Any) -> Node:
        token = self.next_non_space()
        if token.typ != RDELIM:
            self.unexpected(token, context)
        if self.range_depth == 0:
            self.errorf(f"{context} outside {{{{range}}}}")
        return cls(item.pos, item.line)  # type: ignore[no-any-return]

    def else_control(self) -> Node:
        peek = self.peek_non_space()
        if peek.typ in (IF, WITH):
            return _Else(peek.pos, peek.line)
        token = self.expect(RDELIM, "else")
        return _Else(token.pos, token.line)

    def parse_control(self, context: str) -> tuple[int, int, PipeNode, ListNode, ListNode | None]:
        mark = len(self.vars)
        try:
            pipe = self.pipeline(context, RDELIM)
            if context == "range":
                self.range_depth += 1
            lst, nxt = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list: ListNode | None = None
            if isinstance(nxt, _Else):
                if context == "if" and self.peek().typ == IF:
                    self.next()
                    else_list = ListNode(nxt.pos)
                    else_list.nodes.append(IfNode(*self.parse_control("if")))
                elif context == "with" and self.peek().typ == WITH:
                    self.next()
                    else_list = ListNode(nxt.pos)
                    else_list.nodes.append(WithNode(*self.parse_control("with")))
                else:
                    else_list, nxt = self.item_list()
                    if not isinstance(nxt, _End):
                        self.errorf(f"expected end; found {nxt}")
            return pipe.pos, pipe.line, pipe, lst, else_list
        finally:
            del self.vars[mark:]

    def block_control(self) -> Node:
        context = "block clause"
        token = self.next_non_space()
        name = self.template_name(token, context)
        pipe = self.pipeline(context, RDELIM)
        saved_vars = self.vars
        self.vars = ["$"]
        body, end = self.item_list()
        self.vars = saved_vars
        if not isinstance(end, _End):
            self.errorf(f"unexpected {end} in {context}")
        self.add_definition(name, body)
        return TemplateNode(token.pos, token.line, name, pipe)

    def template_control(self) -> Node:
        context = "template clause"
        token = self.next_non_space()
        name = self.template_name(token, context)
        pipe: PipeNode | None = None
        if self.next_non_space().typ != RDELIM:
            self.backup()
            pipe = self.pipeline(context, RDELIM)
        return TemplateNode(token.pos, token.line, name, pipe)

    def template_name(self, token: Item, context: str) -> str:
        if token.typ in (STRING, RAWSTRING):
            return self.unquote(token.val)
        self.unexpected(token, context)
        raise AssertionError

    def pipeline(self, context: str, end: str) -> PipeNode:
        token = self.peek_non_space()
        pipe = PipeNode(token.pos, token.line)
        while True:
            v = self.peek_non_space()
            if v.typ != VARIABLE:
                break
            start = self.i
            self.next_non_space()
            nxt = self.peek_non_space()
            if nxt.typ in (ASSIGN, DECLARE):
                pipe.is_assign = nxt.typ == ASSIGN
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, [v.val]))
                self.vars.append(v.val)
                break
            if nxt.typ == CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, [v.val]))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (VARIABLE, RDELIM, RPAREN):
                        continue
                    self.errorf("range can only initialize variables")
                self.errorf(f"too many declarations in {context}")
            self.i = start  # not a declaration: the variable starts the command
            break
        while True:
            token = self.next_non_space()
            if token.typ == end:
                self.check_pipeline(pipe, context)
                return pipe
            if token.typ in (
                BOOL,
                CHAR_CONST,
                COMPLEX,
                DOT,
                FIELD,
                IDENT,
                NUMBER,
                NIL,
                RAWSTRING,
                STRING,
                VARIABLE,
                LPAREN,
            ):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                self.unexpected(token, context)

    def check_pipeline(self, pipe: PipeNode, context: str) -> None:
        if not pipe.cmds:
            self.errorf(f"missing value for {context}")
        for i, cmd in enumerate(pipe.cmds[1:]):
            if isinstance(cmd.args[0], BoolNode | DotNode | NilNode | NumberNode | StringNode):
                self.errorf(f"non executable command in pipeline stage {i + 2}")

    def command(self) -> CommandNode:
        cmd = CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            token = self.next()
            if token.typ == SPACE:
                continue
            if token.typ in (RDELIM, RPAREN):
                self.backup()
            elif token.typ == PIPE:
                pass
            else:
                self.unexpected(token, "operand")
            break
        if not cmd.args:
            self.errorf("empty command")
        return cmd

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == FIELD:
            chain = ChainNode(self.peek().pos, node)
            while self.peek().typ == FIELD:
                chain.fields.append(self.next().val[1:])
            if isinstance(node, FieldNode):
                return FieldNode(chain.pos, [*node.ident, *chain.fields])
            if isinstance(node, VariableNode):
                return VariableNode(chain.pos, [*node.ident, *chain.fields])
            if isinstance(node, BoolNode | StringNode | NumberNode | NilNode | DotNode):
                self.errorf(f"unexpected . after term {_go_quote_q(str(node))}")
            return chain
        return node

    def term(self) -> Node | None:
        token = self.next_non_space()
        typ = token.typ
        if typ == IDENT:
            if token.val not in self.funcs:
                self.errorf(f"function {_go_quote_q(token.val)} not defined")
            return IdentifierNode(token.pos, token.val)
        if typ == DOT:
            return DotNode(token.pos)
        if typ == NIL:
            return NilNode(token.pos)
        if typ == VARIABLE:
            return self.use_var(token)
        if typ == FIELD:
            return FieldNode(token.pos, token.val[1:].split("."))
        if typ == BOOL:
            return BoolNode(token.pos, token.val == "true")
        if typ in (CHAR_CONST, COMPLEX, NUMBER):
            return self.number(token)
        if typ == LPAREN:
            # Go allows 10000 nested parentheses; Python's stack allows about 100 here.
            if self.stack_depth >= MAX_PAREN_DEPTH:
                self.errorf("max expression depth exceeded")
            self.stack_depth += 1
            try:
                return self.pipeline("parenthesized pipeline", RPAREN)
            finally:
                self.stack_depth -= 1
        if typ in (STRING, RAWSTRING):
            return StringNode(token.pos, token.val, self.unquote(token.val))
        self.backup()
        return None

    def use_var(self, token: Item) -> Node:
        parts = token.val.split(".")
        if parts[0] not in self.vars:
            self.errorf(f"undefined variable {_go_quote_q(parts[0])}")
        return VariableNode(token.pos, parts)

    def unquote(self, quoted: str) -> str:
        text = _go_unquote(quoted)
        if text is None:
            self.errorf("invalid syntax")
            raise AssertionError
        return text

    def number(self, token: Item) -> NumberNode:
        node = _parse_number(token)
        if isinstance(node, str):
            self.errorf(node)
            raise AssertionError
        return node


def _is_empty(node: ListNode) -> bool:
    for child in node.nodes:
        if isinstance(child, TextNode):
            if child.text.strip(" \t\r\n\v\f\x85\xa0"):
                return False
        else:
            return False
    return True


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _go_unquote(quoted: str) -> str | None:
    """Go's ``strconv.Unquote`` for ``"..."``, ```...``` and ``'.'``; None when invalid."""
    if len(quoted) < 2:
        return None
    q = quoted[0]
    if q != quoted[-1]:
        return None
    body = quoted[1:-1]
    if q == "`":
        if "`" in body:
            return None
        return body.replace("\r", "")
    if q not in "\"'":
        return None
    if "\n" in body:
        return None
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == q:
            return None
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        i += 1
        if i >= len(body):
            return None
        c = body[i]
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
            i += 1
        elif c in "\\'\"":
            if (c == "'" and q == '"') or (c == '"' and q == "'"):
                return None
            out.append(c)
            i += 1
        elif c in "01234567":
            digits = body[i : i + 3]
            if len(digits) < 3 or any(d not in "01234567" for d in digits):
                return None
            value = int(digits, 8)
            if value > 255:
                return None
            out.append(chr(value) if value < 0x80 else bytes([value]).decode("latin-1"))
            i += 3
        elif c in "xuU":
            size = {"x": 2, "u": 4, "U": 8}[c]
            digits = body[i + 1 : i + 1 + size]
            if len(digits) < size or any(d not in "0123456789abcdefABCDEF" for d in digits):
                return None
            value = int(digits, 16)
            if c != "x" and (value > 0x10FFFF or 0xD800 <= value <= 0xDFFF):
                return None
            out.append(chr(value))
            i += 1 + size
        else:
            return None
    text = "".join(out)
    if q == "'" and len(text) != 1:
        return None
    return text


def _parse_int_literal(text: str) -> int | None:
    try:
        return int(text.replace("_", "") if "_" in text else text, 0)
    except ValueError:
        pass
    # Go accepts a leading 0 as octal ("017"); Python's int(x, 0) refuses it.
    body = text.lstrip("+-")
    if body.startswith("0") and body[1:].isdigit():
        value = int(body, 8) if all(c in "01234567" for c in body) else None
        if value is not None and text.startswith("-"):
            value = -value
        return value
    return None


def _parse_number(token: Item) -> NumberNode | str:
    text = token.val
    node = NumberNode(token.pos, text)
    if token.typ == CHAR_CONST:
        rune = _go_unquote(text)
        if rune is None or len(rune) != 1:
            return "malformed character constant: " + text
        node.int_value = ord(rune)
        node.is_int = node.is_uint = node.is_float = True
        node.float_value = float(ord(rune))
        return node
    if token.typ == COMPLEX or text.endswith("i"):
        return f"complex constants are not supported: {text}"
    value = _parse_int_literal(text)
    if value is not None and "_" in text and not _valid_underscores(text):
        value = None
    if value is not None and not -(2**63) <= value < 2**64:
        return f"integer overflow: {_go_quote_q(text)}"
    if value is not None:
        node.is_int = -(2**63) <= value < 2**63
        node.is_uint = 0 <= value < 2**64
        node.int_value = value
        node.is_float = True
        node.float_value = float(value)
        return node
    if not any(c in text for c in ".eEpP") or (
        text.lower().lstrip("+-").startswith("0x") and not any(c in text for c in "pP")
    ):
        try:
            float(text.replace("_", ""))
        except ValueError:
            return f"illegal number syntax: {_go_quote_q(text)}"
        return f"integer overflow: {_go_quote_q(text)}"
    try:
        if text.lower().startswith(("0x", "-0x", "+0x")):
            node.float_value = float.fromhex(text.replace("_", ""))
        else:
            node.float_value = float(ast.literal_eval(text.replace("_", "").lstrip("+")))
            if text.startswith("-") and node.float_value > 0:
                node.float_value = -node.float_value
    except (ValueError, SyntaxError, OverflowError):
        return f"illegal number syntax: {_go_quote_q(text)}"
    node.is_float = True
    if node.float_value == int(node.float_value) and abs(node.float_value) < 2**63:
        node.is_int = True
        node.int_value = int(node.float_value)
        node.is_uint = node.int_value >= 0
    return node


def _valid_underscores(text: str) -> bool:
    body = text.lstrip("+-")
    if body[:2].lower() in ("0x", "0o", "0b"):
        body = "0" + body[2:].lstrip("_") if body[2:3] == "_" else body[2:]
    return "__" not in body and not body.endswith("_") and not body.startswith("_")


def parse(text: str, funcs: frozenset[str] | set[str]) -> Tree:
    """Parse ``text`` with ``funcs`` as the defined function names.

    Raises:
        ParseError: Go's parse error text.
    """
    try:
        return _Parser(text, funcs).parse()
    except RecursionError:
        raise ParseError(f"template: {NAME}:1: max expression depth exceeded", 1) from None
