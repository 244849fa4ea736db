"""Safe regular expressions for `q` patterns (~=): Python `re` syntax and `re.search` answers, linear time.

Python's `re` backtracks and has no timeout, so a hostile pattern such as `(a*)*b` can take a worker for minutes.
Patterns are parsed with the standard library's own regex parser and run as a Thompson NFA: time grows linearly
with the text. Backreferences, lookarounds, atomic groups and possessive quantifiers (not regular) are rejected.
"""

from __future__ import annotations

import re
from functools import lru_cache
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

MAX_PROGRAM = 4096


_CATEGORIES = {sre_c.CATEGORY_DIGIT: r"\d", sre_c.CATEGORY_NOT_DIGIT: r"\D", sre_c.CATEGORY_SPACE: r"\s",
               sre_c.CATEGORY_NOT_SPACE: r"\S", sre_c.CATEGORY_WORD: r"\w", sre_c.CATEGORY_NOT_WORD: r"\W"}
_ATOM_FLAGS = re.IGNORECASE | re.DOTALL | re.ASCII


@lru_cache(maxsize=256)
def program(regex: str) -> tuple[tuple[Any, ...], ...]:
    """Compile a regex to a Thompson NFA program (char/at/split/jmp/match); ValueError if not regular."""
    tree = sre_parse.parse(regex)
    prog: list[Any] = []
    _emit(list(tree), tree.state.flags, prog)
    prog.append(("match",))
    return tuple(prog)


def _emit(items: list[Any], flags: int, prog: list[Any]) -> None:
    """Append the NFA instructions of an sre parse (sub)tree."""
    for op, av in items:
        if op in (sre_c.LITERAL, sre_c.NOT_LITERAL, sre_c.ANY, sre_c.IN):
            prog.append(("char", _atom(_atom_source(op, av), flags & _ATOM_FLAGS)))
        elif op == sre_c.AT:
            prog.append(("at", av, flags))
        elif op == sre_c.SUBPATTERN:
            _emit(list(av[3]), (flags | av[1]) & ~av[2], prog)
        elif op == sre_c.BRANCH:
            jumps = []
            for alt in av[1][:-1]:
                fork = len(prog)
                prog.append(None)
                _emit(list(alt), flags, prog)
                jumps.append(len(prog))
                prog.append(None)
                prog[fork] = ("split", fork + 1, len(prog))
            _emit(list(av[1][-1]), flags, prog)
            for j in jumps:
                prog[j] = ("jmp", len(prog))
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            low, high, sub = av
            for _ in range(low):
                _emit(list(sub), flags, prog)
            holes = []
            for _ in range(high - low if high != sre_c.MAXREPEAT else 1):
                holes.append(len(prog))
                prog.append(None)
                _emit(list(sub), flags, prog)
                if high == sre_c.MAXREPEAT:
                    prog.append(("jmp", holes[0]))
            for h in holes:
                prog[h] = ("split", h + 1, len(prog))
        else:
            raise ValueError(f"{str(op).lower()} is not supported (no backreferences, lookarounds, atomic groups)")
        if len(prog) > MAX_PROGRAM:
            raise ValueError("pattern too large once repetitions are expanded")


def _atom_source(op: Any, av: Any) -> str:
    """Regex source for one character test (compiled with Python's re so classes and case folding match re)."""
    if op == sre_c.LITERAL:
        return f"\\U{av:08x}"
    if op == sre_c.NOT_LITERAL:
        return f"[^\\U{av:08x}]"
    if op == sre_c.ANY:
        return "."
    parts: list[str] = []
    for o, a in av:
        if o == sre_c.NEGATE:
            parts.insert(0, "^")
        elif o == sre_c.LITERAL:
            parts.append(f"\\U{a:08x}")
        elif o == sre_c.RANGE:
            parts.append(f"\\U{a[0]:08x}-\\U{a[1]:08x}")
        elif o == sre_c.CATEGORY and a in _CATEGORIES:
            parts.append(_CATEGORIES[a])
        else:
            raise ValueError(f"character class item {o} is not supported")
    return f"[{''.join(parts)}]"


@lru_cache(maxsize=4096)
def _atom(source: str, flags: int) -> re.Pattern[str]:
    """Compiled single-character test."""
    return re.compile(source, flags)


def _at(kind: Any, flags: int, text: str, pos: int) -> bool:
    """Zero-width assertion (^ $ \\A \\Z \\b \\B) at `pos`, with re's semantics."""
    n, multiline = len(text), flags & re.MULTILINE
    if kind in (sre_c.AT_BEGINNING, sre_c.AT_BEGINNING_STRING):
        return pos == 0 or bool(kind == sre_c.AT_BEGINNING and multiline and text[pos - 1] == "\n")
    if kind in (sre_c.AT_END, sre_c.AT_END_STRING):
        if pos == n or kind == sre_c.AT_END_STRING:
            return pos == n
        return text[pos] == "\n" and (pos == n - 1 or bool(multiline))
    ascii_only = flags & re.ASCII

    def word(i: int) -> bool:
        return 0 <= i < n and (text[i].isalnum() or text[i] == "_") and (not ascii_only or text[i].isascii())

    boundary = word(pos - 1) != word(pos)
    if kind in (sre_c.AT_BOUNDARY, sre_c.AT_NON_BOUNDARY):
        return boundary if kind == sre_c.AT_BOUNDARY else (n > 0 and not boundary)  # re: \\B never matches ""
    raise ValueError(f"assertion {kind} is not supported")


def _closure(prog: tuple[tuple[Any, ...], ...], pc: int, text: str, pos: int, out: list[int], seen: set[int]) -> bool:
    """Follow epsilon moves from `pc` at `pos`, collecting char instructions; True when `match` is reached."""
    stack = [pc]
    while stack:
        pc = stack.pop()
        if pc in seen:
            continue
        seen.add(pc)
        ins = prog[pc]
        if ins[0] == "match":
            return True
        if ins[0] == "jmp":
            stack.append(ins[1])
        elif ins[0] == "split":
            stack.extend((ins[2], ins[1]))
        elif ins[0] == "at":
            if _at(ins[1], ins[2], text, pos):
                stack.append(pc + 1)
        else:
            out.append(pc)
    return False


def regex_search(regex: str, text: str) -> bool:
    """Whether `re.search(regex, text)` would match, in O(len(text) * len(program)) time (no backtracking)."""
    prog = program(regex)
    if all(ins[0] != "split" for ins in prog):  # no repetition or alternation: re cannot backtrack
        return re.search(regex, text) is not None
    threads: list[int] = []
    seen: set[int] = set()
    for pos in range(len(text) + 1):
        if _closure(prog, 0, text, pos, threads, seen):
            return True
        if pos == len(text):
            break
        ch, nxt, seen = text[pos], list[int](), set[int]()
        for pc in threads:
            if prog[pc][1].match(ch) and _closure(prog, pc + 1, text, pos + 1, nxt, seen):
                return True
        threads = nxt
    return False
