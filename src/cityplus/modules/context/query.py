"""NGSI-LD query language (`q`, GS CIM 009 §4.9) and scope queries (`scopeQ`, §4.19): parse, evaluate, narrow in SQL.

Grammar decisions (superset of the §4.9 ABNF):
- `;` (AND) binds tighter than `|` (OR); parentheses group and may nest (depth <= 50); input <= 4096 characters.
  Errors are QuerySyntaxError with a 0-based character `position`; blanks between tokens are ignored.
- `!attr` tests non-existence; it takes no operator.
- Attribute: `name(.name)*` are the attribute and sub-attributes (each expanded), a final `.observedAt`, `.createdAt`,
  `.modifiedAt`, `.unitCode` or `.datasetId` names metadata; `[key]` enters the value (languageMap for a
  LanguageProperty) and every later `[key]` or `.key` is a key into that value, never expanded.
- Values: numbers, "quoted strings" (`\\"` and `\\\\` are the only escapes), dateTime/date/time, true/false, URIs
  (bare `scheme:rest`, compared as strings), lists `a,b` and ranges `a..b` (== and != only). Bare tokens end at
  `; | ) ,` whitespace or `..`; a bare regex after `~=` ends at `;`, `|` or `)` outside its own parentheses.
- Regexes use Python `re` syntax and `re.search` semantics but run on a Thompson NFA (`regex_search`): linear in the
  value length, so no catastrophic backtracking and no timeout needed. Limits: 256 characters, 4096 NFA instructions
  after expanding `{m,n}`; backreferences, lookarounds, atomic groups and possessive quantifiers are rejected.
- Semantics: type-aware (a number never equals a string; dateTime/date/time literals compare parsed values), any
  instance of a multi-attribute and any element of an array may match; `!=` and `!~=` need the target to exist.
- to_sql narrows with EXISTS over context_attr_index and over-approximates where the index is lossy (truncated
  strings, floats beyond 2**53, observedAt sharing the ts column); sub-attributes, keys, `!=`, patterns, date/time
  literals narrow to "the attribute exists"; `!attr` is NOT EXISTS; scope terms are not narrowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from cityplus.modules.context.regex import program, regex_search

MAX_QUERY_LENGTH = 4096
MAX_DEPTH = 50
MAX_REGEX_LENGTH = 256
TEXT_LEN = 512
METADATA = frozenset({"observedAt", "createdAt", "modifiedAt", "unitCode", "datasetId"})
ATTR_TYPES = frozenset({"Property", "Relationship", "GeoProperty", "LanguageProperty", "VocabProperty",
                        "ListProperty", "ListRelationship", "JsonProperty"})
_MEMBER = {"Property": "value", "GeoProperty": "value", "Relationship": "object", "LanguageProperty": "languageMap",
           "VocabProperty": "vocab", "ListProperty": "valueList", "ListRelationship": "objectList",
           "JsonProperty": "json"}
_NAME = re.compile(r"[\w:\-]+")
_KEY = re.compile(r"[^\[\]]+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_BARE_END = re.compile(r"[;|),\s]|\.\.")
_OPS = ("==", "!=", ">=", "<=", "!~=", "~=", ">", "<")
_SCOPE_LEVEL = re.compile(r"[\w\-]+|\+")


class QuerySyntaxError(ValueError):
    """A malformed q or scopeQ expression (maps to 400 BadRequestData)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


@dataclass(frozen=True)
class AttrPath:
    """Target of a query term: expanded attribute IRI, sub-attribute IRIs or a metadata name, compound value keys."""

    attr: str
    sub: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Range:
    """Inclusive range literal `low..high`."""

    low: Any
    high: Any


@dataclass(frozen=True)
class And:
    """All children hold."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """At least one child holds."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Comparison:
    """`path op value`; value is a scalar, a tuple (any-of list) or a Range."""

    path: AttrPath
    op: str
    value: Any


@dataclass(frozen=True)
class Exists:
    """`path` (exists) or `!path` (negated: does not exist)."""

    path: AttrPath
    negated: bool = False


@dataclass(frozen=True)
class Pattern:
    """`path~=regex` or `path!~=regex` (negated)."""

    path: AttrPath
    regex: str
    negated: bool = False


@dataclass(frozen=True)
class ScopeMatch:
    """One scopeQ term: scope levels (`+` = any single level), `descendants` for a trailing `/#`."""

    levels: tuple[str, ...]
    descendants: bool = False


Node = And | Or | Comparison | Exists | Pattern | ScopeMatch


# ---------------------------------------------------------------------------------------------------- parsing


class _Parser:
    """Recursive-descent parser shared by q and scopeQ (AND binds tighter than OR)."""

    def __init__(self, text: str, term: Callable[[_Parser], Node]) -> None:
        if not isinstance(text, str) or not text.strip():
            raise QuerySyntaxError("empty query: expected a query term", 0)
        if len(text) > MAX_QUERY_LENGTH:
            raise QuerySyntaxError(f"query longer than {MAX_QUERY_LENGTH} characters", MAX_QUERY_LENGTH)
        self.text, self.pos, self.depth, self.term = text, 0, 0, term

    def fail(self, expected: str) -> QuerySyntaxError:
        """Build an error naming what was expected and what was found here."""
        found = repr(self.text[self.pos:self.pos + 10]) if self.pos < len(self.text) else "end of input"
        return QuerySyntaxError(f"expected {expected}, found {found}", self.pos)

    def skip_ws(self) -> None:
        """Skip blanks between tokens."""
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, token: str) -> bool:
        """Whether `token` starts at the current position (after blanks)."""
        self.skip_ws()
        return self.text.startswith(token, self.pos)

    def take(self, token: str) -> bool:
        """Consume `token` if present."""
        if self.peek(token):
            self.pos += len(token)
            return True
        return False

    def match(self, pattern: re.Pattern[str], expected: str) -> str:
        """Consume a regex match or fail."""
        self.skip_ws()
        m = pattern.match(self.text, self.pos)
        if not m or not m.group():
            raise self.fail(expected)
        self.pos = m.end()
        return m.group()

    def parse(self) -> Node:
        """Parse the whole input."""
        node = self.or_expr()
        self.skip_ws()
        if self.pos != len(self.text):
            raise self.fail("';', '|' or end of input")
        return node

    def or_expr(self) -> Node:
        """expr := and_expr ('|' and_expr)*."""
        parts = [self.and_expr()]
        while self.take("|"):
            parts.append(self.and_expr())
        return _combine(Or, parts)

    def and_expr(self) -> Node:
        """and_expr := primary (';' primary)*."""
        parts = [self.primary()]
        while self.take(";"):
            parts.append(self.primary())
        return _combine(And, parts)

    def primary(self) -> Node:
        """primary := '(' expr ')' | term."""
        if not self.take("("):
            return self.term(self)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QuerySyntaxError(f"parentheses nested deeper than {MAX_DEPTH}", self.pos)
        node = self.or_expr()
        if not self.take(")"):
            raise self.fail("')'")
        self.depth -= 1
        return node


def _combine(cls: type[And] | type[Or], parts: list[Node]) -> Node:
    """Build an And/Or, flattening nested nodes of the same kind; a single part stands alone."""
    if len(parts) == 1:
        return parts[0]
    flat: list[Node] = []
    for p in parts:
        flat.extend(p.children if isinstance(p, cls) else (p,))
    return cls(tuple(flat))


def parse_q(text: str, expand: Callable[[str], str]) -> Node:
    """Parse an NGSI-LD `q` expression, expanding attribute names with `expand`."""
    return _Parser(text, lambda p: _q_term(p, expand)).parse()


def parse_scope_q(text: str) -> Node:
    """Parse an NGSI-LD `scopeQ` expression (',' is an OR like '|': scope levels never hold a comma)."""
    return _Parser(text.replace(",", "|") if isinstance(text, str) else text, _scope_term).parse()


def _q_term(p: _Parser, expand: Callable[[str], str]) -> Node:
    """QueryTerm := ['!'] Attribute [op value]."""
    negated = p.take("!")
    path = _attr_path(p, expand)
    p.skip_ws()
    op = next((o for o in _OPS if p.text.startswith(o, p.pos)), None)
    if negated or op is None:
        if negated and op is not None:
            raise p.fail("';', '|', ')' or end of input after a non-existence test")
        return Exists(path, negated)
    p.pos += len(op)
    if op in ("~=", "!~="):
        return Pattern(path, _regex(p), op == "!~=")
    return Comparison(path, op, _value(p, op))


def _attr_path(p: _Parser, expand: Callable[[str], str]) -> AttrPath:
    """Attribute := name ('.' name)* ('[' key ']' ('[' key ']' | '.' key)*)?."""
    attr = expand(p.match(_NAME, "an attribute name"))
    sub: list[str] = []
    keys: list[str] = []
    while p.pos < len(p.text) and p.text[p.pos] in ".[":
        if p.text[p.pos] == "[":
            p.pos += 1
            keys.append(p.match(_KEY, "a key inside '[...]'"))
            if not p.take("]"):
                raise p.fail("']'")
        else:
            p.pos += 1
            name = p.match(_NAME, "a name after '.'")
            if keys:
                keys.append(name)
            elif sub and sub[-1] in METADATA:
                raise p.fail("an operator: metadata names end an attribute path")
            else:
                sub.append(name if name in METADATA else expand(name))
    if keys and sub and sub[-1] in METADATA:
        raise QuerySyntaxError("metadata names take no '[...]' keys", p.pos)
    return AttrPath(attr, tuple(sub), tuple(keys))


def _regex(p: _Parser) -> str:
    """RegExp: a quoted string or bare text up to a ';', '|' or ')' outside its own parentheses; checked for safety."""
    start = p.pos
    if p.peek('"'):
        regex = _quoted(p)
    else:
        depth, i, text = 0, p.pos, p.text
        while i < len(text) and not (depth == 0 and text[i] in ";|)"):
            if text[i] == "\\":
                i += 1
            elif text[i] == "[":  # skip a character class: brackets may hold ';', '|' or parentheses
                j = i + 1 + text.startswith("^", i + 1)
                j += text.startswith("]", j)
                while j < len(text) and text[j] != "]":
                    j += 2 if text[j] == "\\" else 1
                i = j  # at the closing ']', stepped over below
            elif text[i] in "()":
                depth += 1 if text[i] == "(" else -1
            i += 1
        regex, p.pos = text[p.pos:i], min(i, len(text))
    if not regex:
        raise p.fail("a regular expression")
    _check_regex(regex, start)
    return regex


def _check_regex(regex: str, pos: int) -> None:
    """Reject over-long, invalid or non-regular (backtracking-only) regular expressions."""
    if len(regex) > MAX_REGEX_LENGTH:
        raise QuerySyntaxError(f"regular expression longer than {MAX_REGEX_LENGTH} characters", pos)
    try:
        re.compile(regex)
        program(regex)
    except (re.error, ValueError) as exc:
        raise QuerySyntaxError(f"invalid or unsupported regular expression ({exc})", pos) from None


def _quoted(p: _Parser) -> str:
    """A double-quoted string; `\\"` and `\\\\` are unescaped, other backslashes kept verbatim."""
    start, i, out, text = p.pos, p.pos + 1, list[str](), p.text
    while i < len(text):
        ch = text[i]
        if ch == '"':
            p.pos = i + 1
            return "".join(out)
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise QuerySyntaxError("unterminated string: expected closing '\"'", start)


def _value(p: _Parser, op: str) -> Any:
    """Value after an operator: scalar, list (tuple) or Range; lists and ranges only for == and !=."""
    p.skip_ws()
    start = p.pos
    first = _scalar(p)
    if p.take(".."):
        second = _scalar(p)
        if op not in ("==", "!="):
            raise QuerySyntaxError("ranges are only allowed with '==' and '!='", start)
        if _kind(first) != _kind(second) or _kind(first) in ("bool", "uri"):
            raise QuerySyntaxError("range bounds must be two comparable values of the same type", start)
        return Range(first, second)
    if p.peek(","):
        items = [first]
        while p.take(","):
            items.append(_scalar(p))
        if op not in ("==", "!="):
            raise QuerySyntaxError("value lists are only allowed with '==' and '!='", start)
        return tuple(_plain(v) for v in items)
    if op not in ("==", "!=") and _kind(first) in ("bool", "uri"):
        raise QuerySyntaxError(f"'{op}' needs a number, string, dateTime, date or time", start)
    return _plain(first)


class _Uri(str):
    """A bare URI literal (compared as a string)."""


def _plain(v: Any) -> Any:
    """Drop the URI marker type."""
    return str(v) if isinstance(v, _Uri) else v


def _kind(v: Any) -> str:
    """Type family of a literal or value for type-aware comparison."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, _Uri):
        return "uri"
    return {datetime: "datetime", date: "date", time: "time"}.get(type(v), "string")


def _scalar(p: _Parser) -> Any:
    """One literal: quoted string, number, dateTime, date, time, true/false or URI."""
    p.skip_ws()
    if p.peek('"'):
        return _quoted(p)
    start = p.pos
    m = _BARE_END.search(p.text, p.pos)
    end = m.start() if m else len(p.text)
    token, p.pos = p.text[start:end], end
    if not token:
        raise p.fail("a value")
    if token in ("true", "false"):
        return token == "true"
    try:
        if _NUMBER.fullmatch(token):
            return float(token) if any(c in token for c in ".eE") else int(token)
        for pattern, parse in ((_DATETIME, _parse_datetime), (_DATE, date.fromisoformat), (_TIME, _parse_time)):
            if pattern.fullmatch(token):
                return parse(token)
    except ValueError:
        raise QuerySyntaxError(f"invalid date/time value {token!r}", start) from None
    if _URI.fullmatch(token):
        return _Uri(token)
    raise QuerySyntaxError(f"expected a number, quoted string, dateTime, date, time, true, false or URI, "
                           f"found {token[:20]!r}", start)


def _parse_datetime(s: str) -> datetime:
    """ISO 8601 dateTime → aware UTC datetime (naive values are taken as UTC)."""
    dt = datetime.fromisoformat(s)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _parse_time(s: str) -> time:
    """ISO 8601 time → naive UTC time."""
    t = time.fromisoformat(s)
    if t.tzinfo is not None:
        t = datetime.combine(date(2000, 1, 1), t).astimezone(UTC).time()
    return t.replace(tzinfo=None)


def _scope_term(p: _Parser) -> Node:
    """ScopeTerm := '/#' | ('/' level)+ ['/#'] where a level may be '+'."""
    levels: list[str] = []
    while p.take("/"):
        if p.take("#"):
            return ScopeMatch(tuple(levels), True)
        levels.append(p.match(_SCOPE_LEVEL, "a scope level, '+' or '#'"))
    if not levels:
        raise p.fail("a scope starting with '/'")
    return ScopeMatch(tuple(levels))


# ---------------------------------------------------------------------------------------------------- evaluation


def _instances(entity: dict[str, Any], iri: str) -> list[dict[str, Any]]:
    """Attribute instances (multi-attribute aware) stored under `iri` in an entity or attribute."""
    raw = entity.get(iri)
    items = raw if isinstance(raw, list) else [raw]
    return [i for i in items if isinstance(i, dict) and _attr_type(i) in ATTR_TYPES]


def _attr_type(instance: dict[str, Any]) -> str:
    """Short attribute type (accepts the expanded IRI form)."""
    t = instance.get("type", instance.get("@type"))
    t = t[0] if isinstance(t, list) and t else t
    return t.rsplit("/", 1)[-1] if isinstance(t, str) else ""


def _unwrap(v: Any) -> Any:
    """Strip JSON-LD wrappers: {"@value": x}, {"@id": x}, {"@list": [...]}."""
    while isinstance(v, dict):
        key = next((k for k in ("@value", "@id", "@list") if k in v), None)
        if key is None:
            break
        v = v[key]
    return v


def _main_value(instance: dict[str, Any], keyed: bool) -> Any:
    """The value member of an instance; a LanguageProperty yields its languageMap (or its texts when not keyed)."""
    kind = _attr_type(instance)
    v = instance.get(_MEMBER.get(kind, "value"))
    if kind == "JsonProperty":
        return v
    if kind == "LanguageProperty":
        if isinstance(v, list):  # expanded [{"@value", "@language"}] form
            v = {i.get("@language"): i.get("@value") for i in v if isinstance(i, dict)}
        if isinstance(v, dict) and not keyed:
            return list(v.values())
        return v
    v = _unwrap(v)
    if kind == "ListRelationship" and isinstance(v, list):
        v = [i.get("object") if isinstance(i, dict) and "object" in i else i for i in v]
    return [_unwrap(i) for i in v] if isinstance(v, list) else v


def _targets(instance: dict[str, Any], path: AttrPath) -> list[Any]:
    """Values a path designates inside one top-level attribute instance (empty when absent)."""
    current = [instance]
    for name in path.sub:
        if name in METADATA:
            return [_unwrap(i[name]) for i in current if name in i]
        current = [s for i in current for s in _instances(i, name)]
    values = [_main_value(i, bool(path.keys)) for i in current]
    any_language = bool(path.keys) and path.keys[0] == "*" and all(_attr_type(i) == "LanguageProperty"
                                                                   for i in current)
    for n, key in enumerate(path.keys):
        nxt: list[Any] = []
        for v in values:
            for item in (v if isinstance(v, list) else [v]):
                if n == 0 and any_language and isinstance(item, dict):
                    nxt.extend(item.values())  # attr[*]: the text in any language (§4.9)
                elif isinstance(item, dict) and key in item:
                    nxt.append(item[key])
        values = nxt
    return values


def _flatten(values: list[Any]) -> Iterator[Any]:
    """Scalars of a list of values, descending into arrays (iteratively: stored JSON may nest deeply)."""
    stack = list(reversed(values))
    while stack:
        v = _unwrap(stack.pop())
        if isinstance(v, list):
            stack.extend(reversed(v))
        else:
            yield v


def _coerce(value: Any, kind: str) -> Any:
    """Convert a stored value to the literal's type family, or None when it is not of that family."""
    if kind == "number":
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if not isinstance(value, str):
        return None
    if kind == "string":
        return value
    pattern, parse = {"datetime": (_DATETIME, _parse_datetime), "date": (_DATE, date.fromisoformat),
                      "time": (_TIME, _parse_time)}[kind]
    try:
        return parse(value) if pattern.fullmatch(value) else None
    except ValueError:
        return None


def _matches(value: Any, op: str, lit: Any) -> bool:
    """Positive comparison of one stored scalar with a literal (== for lists and ranges)."""
    if isinstance(lit, tuple):
        return any(_matches(value, "==", item) for item in lit)
    if isinstance(lit, Range):
        return _matches(value, ">=", lit.low) and _matches(value, "<=", lit.high)
    v = _coerce(value, _kind(lit))
    if v is None:
        return False
    if op in ("==", "!="):
        return bool(v == lit)
    return bool({">": v > lit, ">=": v >= lit, "<": v < lit, "<=": v <= lit}[op])


def _instance_holds(node: Comparison | Pattern, values: list[Any]) -> bool:
    """Whether a comparison or pattern holds for the target values of one attribute instance."""
    scalars = list(_flatten(values))
    if isinstance(node, Pattern):
        hit = any(isinstance(s, str) and regex_search(node.regex, s) for s in scalars)
    else:
        hit = any(_matches(s, node.op, node.value) for s in scalars)
    negated = node.negated if isinstance(node, Pattern) else node.op == "!="
    return hit != negated


def evaluate(node: Node, entity: dict[str, Any]) -> bool:
    """Exactly evaluate a parsed query against one expanded entity."""
    if isinstance(node, And):
        return all(evaluate(c, entity) for c in node.children)
    if isinstance(node, Or):
        return any(evaluate(c, entity) for c in node.children)
    if isinstance(node, ScopeMatch):
        raw = entity.get("scope", entity.get("https://uri.etsi.org/ngsi-ld/scope"))
        scopes = [_unwrap(s) for s in (raw if isinstance(raw, list) else [raw]) if s is not None]
        return evaluate_scope(node, [s for s in scopes if isinstance(s, str)])
    per_instance = [_targets(i, node.path) for i in _instances(entity, node.path.attr)]
    if isinstance(node, Exists):
        return any(per_instance) != node.negated
    return any(_instance_holds(node, values) for values in per_instance if values)


def evaluate_scope(node: Node, scopes: list[str]) -> bool:
    """Evaluate a parsed scopeQ against an entity's scopes."""
    if isinstance(node, And):
        return all(evaluate_scope(c, scopes) for c in node.children)
    if isinstance(node, Or):
        return any(evaluate_scope(c, scopes) for c in node.children)
    if not isinstance(node, ScopeMatch):
        raise TypeError(f"not a scope query node: {node!r}")
    for scope in scopes:
        levels = [s for s in scope.split("/") if s]
        if len(levels) < len(node.levels) or (len(levels) > len(node.levels) and not node.descendants):
            continue
        if all(want in ("+", got) for want, got in zip(node.levels, levels, strict=False)):
            return True
    return False
