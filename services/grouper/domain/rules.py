"""Rule language of the grouping schemes: parsing, validation and compilation.

A scheme writes every MDC entry test, ADRG rule and DRG split rule as a small JSON tree
(see the scheme README, "Rule language"). This module turns such a tree into a `Rule`:
an immutable node that keeps the source form (for traces and diffs) and a compiled
predicate (a closure over frozensets) that the fast grouping path calls.

Conditions live in a registry, so that supporting a new condition is one small build
function plus a `@condition(...)` registration (and a test)::

    @condition("pdx_in", LIST, evidence=lambda codes, c: (c.pdx,))
    def _pdx_in(codes, env):
        return lambda c: c.pdx in codes

The predicates read a per-case context object (`engine.CaseContext`); the attributes they
may use are documented there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import SchemeError

Predicate = Callable[[Any], bool]

# Argument kinds a condition can take.
LIST = "list"  # a list id of lists.json, resolved to a frozenset of codes
INT = "int"  # a JSON integer (not a boolean)
TRUE = "true"  # the literal `true`, as in {"has_mcc": true}
STR = "str"  # a literal string, as in {"any_dx_prefix": "Z37."}
REGIONS = "regions"  # {"min": k, "regions": [list id, ...]}

COMBINATORS = ("all", "any", "not")


@dataclass(frozen=True)
class CompileEnv:
    """What a condition may need at compile time besides its argument."""

    lists: Mapping[str, frozenset[str]]
    # Lazily computed, at most once per case; see engine.CaseContext.
    has_mcc: Predicate
    has_cc: Predicate


@dataclass(frozen=True)
class Condition:
    """A registered leaf condition of the rule language."""

    name: str
    arg_kind: str
    build: Callable[[Any, CompileEnv], Predicate]
    # Returns the facts that made the condition true (codes, values), for the trace.
    evidence: Callable[[Any, Any], tuple] | None = None
    description: str = ""


CONDITIONS: dict[str, Condition] = {}


def condition(
    name: str,
    arg_kind: str,
    *,
    evidence: Callable[[Any, Any], tuple] | None = None,
    description: str = "",
) -> Callable[[Callable[[Any, CompileEnv], Predicate]], Callable[[Any, CompileEnv], Predicate]]:
    """Register a condition: `build(resolved_arg, env)` returns the predicate."""

    def register(build: Callable[[Any, CompileEnv], Predicate]):
        if name in CONDITIONS or name in COMBINATORS or name == "true":
            raise ValueError(f"condition {name!r} is already defined")
        CONDITIONS[name] = Condition(name, arg_kind, build, evidence, description)
        return build

    return register


# --------------------------------------------------------------------------- conditions


def _hits(codes: frozenset[str], seq) -> tuple[str, ...]:
    return tuple(x for x in seq if x in codes)


@condition("pdx_in", LIST, evidence=lambda codes, c: (c.pdx,), description="主诊断在列表中")
def _pdx_in(codes, env):
    return lambda c: c.pdx in codes


@condition(
    "any_dx_in", LIST, evidence=lambda codes, c: _hits(codes, c.dx), description="任一诊断在列表中"
)
def _any_dx_in(codes, env):
    return lambda c: not codes.isdisjoint(c.dx)


@condition(
    "any_sec_dx_in",
    LIST,
    evidence=lambda codes, c: _hits(codes, c.dx[1:]),
    description="任一其他诊断在列表中",
)
def _any_sec_dx_in(codes, env):
    # The principal does not count, but a repeat of it later in the list does.
    return lambda c: not codes.isdisjoint(c.dx[1:])


@condition("main_px_in", LIST, evidence=lambda codes, c: (c.mpx,), description="主手术在列表中")
def _main_px_in(codes, env):
    # c.mpx is None without procedures, and None is never in a code list.
    return lambda c: c.mpx in codes


@condition(
    "any_px_in", LIST, evidence=lambda codes, c: _hits(codes, c.px), description="任一手术在列表中"
)
def _any_px_in(codes, env):
    return lambda c: not codes.isdisjoint(c.px)


@condition(
    "any_dx_prefix",
    STR,
    evidence=lambda prefix, c: tuple(d for d in c.dx if d.startswith(prefix)),
    description="任一诊断以该前缀开头",
)
def _any_dx_prefix(prefix, env):
    # Plain case-sensitive prefix test, no trimming: codes outside the dictionary match too.
    def pred(c):
        for d in c.dx:
            if d.startswith(prefix):
                return True
        return False

    return pred


@condition("sex_eq", INT, evidence=lambda n, c: (f"sex={c.sex}",), description="性别等于")
def _sex_eq(n, env):
    return lambda c: c.sex == n


@condition("age_years_eq", INT, evidence=lambda n, c: (f"age={c.age}",), description="年龄（岁）等于")
def _age_years_eq(n, env):
    return lambda c: c.age == n


@condition("age_years_ge", INT, evidence=lambda n, c: (f"age={c.age}",), description="年龄（岁）不小于")
def _age_years_ge(n, env):
    return lambda c: c.age is not None and c.age >= n


@condition("age_years_lt", INT, evidence=lambda n, c: (f"age={c.age}",), description="年龄（岁）小于")
def _age_years_lt(n, env):
    return lambda c: c.age is not None and c.age < n


@condition("los_ge", INT, evidence=lambda n, c: (f"los={c.los}",), description="住院天数不小于")
def _los_ge(n, env):
    # A case without a usable length of stay satisfies neither side of a LOS split.
    return lambda c: c.los is not None and c.los >= n


@condition("los_lt", INT, evidence=lambda n, c: (f"los={c.los}",), description="住院天数小于")
def _los_lt(n, env):
    return lambda c: c.los is not None and c.los < n


@condition(
    "age_days_le",
    INT,
    evidence=lambda n, c: (f"age_days={c.age_days}",),
    description="年龄（天）不大于",
)
def _age_days_le(n, env):
    return lambda c: c.age_days is not None and c.age_days <= n


@condition(
    "birth_weight_lt",
    INT,
    evidence=lambda n, c: (f"birth_weight={c.bw}",),
    description="出生体重小于",
)
def _birth_weight_lt(n, env):
    # A weight of 0 means "not recorded" in the source, so it never satisfies a band.
    return lambda c: c.bw is not None and c.bw != 0 and c.bw < n


@condition(
    "birth_weight_ge",
    INT,
    evidence=lambda n, c: (f"birth_weight={c.bw}",),
    description="出生体重不小于",
)
def _birth_weight_ge(n, env):
    return lambda c: c.bw is not None and c.bw != 0 and c.bw >= n


@condition("has_mcc", TRUE, description="伴严重并发症或合并症（MCC）")
def _has_mcc(_arg, env):
    return env.has_mcc


@condition("has_cc", TRUE, description="伴并发症或合并症（CC）")
def _has_cc(_arg, env):
    return env.has_cc


def _regions_evidence(arg, c) -> tuple:
    _k, regions = arg
    out = []
    for list_id, codes in regions:
        hit = _hits(codes, c.dx)
        if hit:
            out.append(f"{list_id}: {', '.join(hit)}")
    return tuple(out)


@condition(
    "dx_regions_ge", REGIONS, evidence=_regions_evidence, description="诊断涉及的创伤部位数不少于"
)
def _dx_regions_ge(arg, env):
    k, regions = arg
    sets = tuple(codes for _list_id, codes in regions)

    def pred(c):
        dx = c.dx
        n = 0
        for codes in sets:
            if not codes.isdisjoint(dx):
                n += 1
                if n >= k:
                    return True
        return False

    return pred


# --------------------------------------------------------------------------- rule tree


def _always(_c) -> bool:
    return True


@dataclass(frozen=True, eq=False)
class Rule:
    """One node of a parsed rule: a combinator, `true`, or a leaf condition.

    `source` is the node's JSON as written in the scheme; `value` the resolved argument of a
    leaf (a frozenset for a list id); `pred` the compiled predicate of the whole subtree.
    """

    op: str
    source: Any
    children: tuple[Rule, ...] = ()
    arg: Any = None
    value: Any = None
    pred: Predicate = field(default=_always, repr=False)

    @property
    def condition(self) -> Condition | None:
        return CONDITIONS.get(self.op)

    def text(self) -> str:
        """Short one-line form, e.g. `pdx_in(BJ1.dx) ∧ main_px_in(BJ1.px)`."""
        if self.op == "true":
            return "true"
        if self.op == "not":
            return f"¬{self.children[0]._wrapped()}"
        if self.op in ("all", "any"):
            if not self.children:
                return "true" if self.op == "all" else "false"
            sep = " ∧ " if self.op == "all" else " ∨ "
            return sep.join(ch._wrapped() for ch in self.children)
        if self.op == "dx_regions_ge":
            return f"dx_regions_ge({self.arg['min']}, {len(self.arg['regions'])} regions)"
        if self.arg is True:
            return self.op
        return f"{self.op}({self.arg})"

    def _wrapped(self) -> str:
        t = self.text()
        return f"({t})" if self.op in ("all", "any") and len(self.children) > 1 else t

    def canonical(self) -> Any:
        """Hashable value of the rule with list ids replaced by their contents.

        Two rules with equal canonical values test the same thing even if their lists are
        named differently. Children of all/any are compared as a set: their order does not
        change the meaning.
        """
        if self.op == "true":
            return ("true",)
        if self.op in ("all", "any"):
            return (self.op, frozenset(ch.canonical() for ch in self.children))
        if self.op == "not":
            return ("not", self.children[0].canonical())
        if self.op == "dx_regions_ge":
            k, regions = self.value
            return (self.op, k, frozenset(codes for _lid, codes in regions))
        return (self.op, self.value)

    def list_ids(self) -> list[str]:
        """Every list id the rule refers to, in order of appearance."""
        out: list[str] = []
        self._collect_lists(out)
        return out

    def _collect_lists(self, out: list[str]) -> None:
        cond = self.condition
        if cond is not None and cond.arg_kind == LIST:
            out.append(self.arg)
        elif cond is not None and cond.arg_kind == REGIONS:
            out.extend(self.arg["regions"])
        for ch in self.children:
            ch._collect_lists(out)

    def leaves_with_lists(self) -> list[Rule]:
        """Leaf nodes whose argument is a list id, depth first."""
        out: list[Rule] = []
        stack = [self]
        while stack:
            node = stack.pop()
            cond = node.condition
            if cond is not None and cond.arg_kind == LIST:
                out.append(node)
            stack.extend(reversed(node.children))
        return out


def _is_int(v: Any) -> bool:
    return type(v) is int


def parse_rule(raw: Any, env: CompileEnv, where: str, path: str = "") -> Rule:
    """Validate and compile one JSON rule tree.

    `where` names the file and the entry (e.g. "adrg.json: ADRG FB1 rule"); it starts every
    error message. `path` locates the node inside the tree for nested errors.
    """

    def fail(problem: str) -> SchemeError:
        at = f" (at {path})" if path else ""
        return SchemeError(f"{where}: {problem}{at}")

    if raw is True:
        return Rule("true", raw)
    if not isinstance(raw, dict):
        raise fail(f"a rule must be true or an object with one key, got {_short(raw)}")
    if len(raw) != 1:
        raise fail(f"a rule object must have exactly one key, got {sorted(raw)}")
    (op, arg), = raw.items()
    sub = f"{path}.{op}" if path else op

    if op in ("all", "any"):
        if not isinstance(arg, list):
            raise fail(f"'{op}' needs a list of rules, got {_short(arg)}")
        children = tuple(parse_rule(r, env, where, f"{sub}[{i}]") for i, r in enumerate(arg))
        return Rule(op, raw, children, pred=_combine(op, children))
    if op == "not":
        child = parse_rule(arg, env, where, sub)
        cp = child.pred
        return Rule(op, raw, (child,), pred=lambda c: not cp(c))

    cond = CONDITIONS.get(op)
    if cond is None:
        raise fail(f"unknown condition {op!r}")
    value = _resolve_arg(cond, arg, env, fail)
    return Rule(op, raw, (), arg, value, cond.build(value, env))


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _resolve_arg(cond: Condition, arg: Any, env: CompileEnv, fail) -> Any:
    kind = cond.arg_kind
    if kind == LIST:
        if not isinstance(arg, str):
            raise fail(f"'{cond.name}' needs a list id string, got {_short(arg)}")
        if arg not in env.lists:
            raise fail(f"unknown list id {arg!r}")
        return env.lists[arg]
    if kind == INT:
        if not _is_int(arg):
            raise fail(f"'{cond.name}' needs an integer, got {_short(arg)}")
        return arg
    if kind == TRUE:
        if arg is not True:
            raise fail(f"'{cond.name}' takes only the value true, got {_short(arg)}")
        return True
    if kind == STR:
        if not isinstance(arg, str) or not arg:
            raise fail(f"'{cond.name}' needs a non-empty string, got {_short(arg)}")
        return arg
    if kind == REGIONS:
        if not isinstance(arg, dict) or set(arg) != {"min", "regions"}:
            raise fail(f"'{cond.name}' needs {{'min': k, 'regions': [list ids]}}, got {_short(arg)}")
        k, regions = arg["min"], arg["regions"]
        if not _is_int(k) or k < 1:
            raise fail(f"'{cond.name}' min must be a positive integer, got {_short(k)}")
        if not isinstance(regions, list) or not regions:
            raise fail(f"'{cond.name}' regions must be a non-empty list of list ids")
        resolved = []
        for lid in regions:
            if not isinstance(lid, str):
                raise fail(f"'{cond.name}' region must be a list id string, got {_short(lid)}")
            if lid not in env.lists:
                raise fail(f"unknown list id {lid!r}")
            resolved.append((lid, env.lists[lid]))
        return (k, tuple(resolved))
    raise fail(f"condition {cond.name!r} has unsupported argument kind {kind!r}")  # pragma: no cover


def _combine(op: str, children: tuple[Rule, ...]) -> Predicate:
    """Combine child predicates; small arities are unrolled because they dominate."""
    preds = tuple(ch.pred for ch in children)
    if op == "all":
        if not preds:
            return _always
        if len(preds) == 1:
            return preds[0]
        if len(preds) == 2:
            a, b = preds
            return lambda c: a(c) and b(c)
        if len(preds) == 3:
            a, b, d = preds
            return lambda c: a(c) and b(c) and d(c)

        def all_pred(c):
            for p in preds:
                if not p(c):
                    return False
            return True

        return all_pred
    if not preds:
        return lambda c: False
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        return lambda c: a(c) or b(c)

    def any_pred(c):
        for p in preds:
            if p(c):
                return True
        return False

    return any_pred
