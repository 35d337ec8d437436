"""Structured comparison of two schemes (domain §14: show a local scheme as a diff).

Rules are compared by value: list ids are replaced by the list contents, so a list that was
renamed but holds the same codes is not reported. Inside each ADRG both schemes have, the DRGs
that only one side has are read as a split (one DRG became several), a merge (several became
one), a new code (one became another) or a regrouping; a group whose name changed is a rename.
Given cases, both schemes group them (raw mode unless told) and the diff counts how many moved from one
group to another (the migration table).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .rules import Rule
from .scheme import Scheme


@dataclass(frozen=True)
class ListChange:
    """Codes added to / removed from a list (ids as named in scheme a and b)."""

    list_a: str
    list_b: str
    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class RuleChange:
    """A rule whose meaning changed. `kind`: mdc_entry | adrg | drg | ambiguous."""

    kind: str
    code: str
    before: str
    after: str
    # When only list contents changed (same rule shape), the codes per list.
    list_changes: tuple[ListChange, ...] = ()


@dataclass(frozen=True)
class TableChange:
    """Changes of a code table (code → value) such as cc.tsv or a code map."""

    added: dict[str, str]
    removed: dict[str, str]
    changed: dict[str, tuple[str, str]]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass(frozen=True)
class GroupChange:
    """DRGs of one ADRG replaced by others. `kind`: split (one → several), merge (several →
    one), recode (one → one other code) or regroup (several → several)."""

    kind: str
    adrg: str
    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass(frozen=True)
class Rename:
    """A group (`kind` adrg or drg) with the same code and another name."""

    kind: str
    code: str
    before: str
    after: str


@dataclass
class SchemeDiff:
    a: str
    b: str
    mdc_order_a: list[str]
    mdc_order_b: list[str]
    mdcs_added: list[str] = field(default_factory=list)
    mdcs_removed: list[str] = field(default_factory=list)
    adrgs_added: list[str] = field(default_factory=list)
    adrgs_removed: list[str] = field(default_factory=list)
    drgs_added: list[str] = field(default_factory=list)
    drgs_removed: list[str] = field(default_factory=list)
    adrg_order_changes: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    group_changes: list[GroupChange] = field(default_factory=list)
    renames: list[Rename] = field(default_factory=list)
    rule_changes: list[RuleChange] = field(default_factory=list)
    lists_added: list[str] = field(default_factory=list)
    lists_removed: list[str] = field(default_factory=list)
    list_changes: list[ListChange] = field(default_factory=list)
    tables: dict[str, TableChange] = field(default_factory=dict)
    evaluation: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    cases: int = 0
    moves: Counter = field(default_factory=Counter)  # (from_drg, to_drg) -> n, moved only

    @property
    def mdc_order_changed(self) -> bool:
        common = set(self.mdc_order_a) & set(self.mdc_order_b)
        return [m for m in self.mdc_order_a if m in common] != [
            m for m in self.mdc_order_b if m in common
        ]

    def mdc_moves(self) -> list[tuple[str, int, int]]:
        """(mdc, position in a, position in b), 1-based, for MDCs whose position changed."""
        pos_b = {m: i for i, m in enumerate(self.mdc_order_b, 1)}
        return [
            (m, i, pos_b[m])
            for i, m in enumerate(self.mdc_order_a, 1)
            if m in pos_b and pos_b[m] != i
        ]

    def rule_change(self, code: str) -> RuleChange | None:
        return next((r for r in self.rule_changes if r.code == code), None)

    @property
    def moved_cases(self) -> int:
        return sum(self.moves.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mdc_order_changed"] = self.mdc_order_changed
        d["tables"] = {k: asdict(v) for k, v in self.tables.items()}
        d["moves"] = [
            {"from": a, "to": b, "n": n} for (a, b), n in self.moves.most_common()
        ]
        return d


def diff_schemes(a: Scheme, b: Scheme, cases: Iterable[Mapping[str, Any]] | None = None,
                 code_mode: str = "raw") -> SchemeDiff:
    """Compare scheme `a` (before) with `b` (after); given cases (engine input), group each
    under both in `code_mode` and count the moves."""
    d = SchemeDiff(a.id, b.id, [m.code for m in a.mdcs], [m.code for m in b.mdcs])
    mdcs_a = {m.code: m for m in a.mdcs}
    mdcs_b = {m.code: m for m in b.mdcs}
    d.mdcs_added = [m for m in mdcs_b if m not in mdcs_a]
    d.mdcs_removed = [m for m in mdcs_a if m not in mdcs_b]
    d.adrgs_added = [x for x in b.adrgs if x not in a.adrgs]
    d.adrgs_removed = [x for x in a.adrgs if x not in b.adrgs]
    d.drgs_added = [x for x in b.drgs if x not in a.drgs]
    d.drgs_removed = [x for x in a.drgs if x not in b.drgs]

    for code, ma in mdcs_a.items():
        mb = mdcs_b.get(code)
        if mb is None:
            continue
        common = set(ma.adrgs) & set(mb.adrgs)
        oa = [x for x in ma.adrgs if x in common]
        ob = [x for x in mb.adrgs if x in common]
        if oa != ob:
            d.adrg_order_changes.append((code, oa, ob))
        _compare_rule(d, "mdc_entry", code, ma.entry, mb.entry)
        amb_a, amb_b = ma.ambiguous, mb.ambiguous
        if (amb_a is None) != (amb_b is None):
            d.rule_changes.append(
                RuleChange("ambiguous", code, _amb_text(amb_a), _amb_text(amb_b))
            )
        elif amb_a is not None and amb_b is not None and (amb_a.enabled or amb_b.enabled):
            # Steps disabled on both sides cannot change a result, so they are not reported.
            if (amb_a.enabled, amb_a.position, amb_a.drg, amb_a.rule.canonical()) != (
                amb_b.enabled,
                amb_b.position,
                amb_b.drg,
                amb_b.rule.canonical(),
            ):
                d.rule_changes.append(
                    RuleChange("ambiguous", code, _amb_text(amb_a), _amb_text(amb_b))
                )
    for code, xa in a.adrgs.items():
        xb = b.adrgs.get(code)
        if xb is not None:
            _compare_rule(d, "adrg", code, xa.rule, xb.rule)
            _compare_drgs(d, code, xa.drgs, xb.drgs)
            if xa.name != xb.name:
                d.renames.append(Rename("adrg", code, xa.name, xb.name))
    for code, da in a.drgs.items():
        db = b.drgs.get(code)
        if db is not None:
            _compare_rule(d, "drg", code, da.rule, db.rule)
            if da.name != db.name:
                d.renames.append(Rename("drg", code, da.name, db.name))

    d.lists_added = sorted(set(b.lists) - set(a.lists))
    d.lists_removed = sorted(set(a.lists) - set(b.lists))
    for lid in sorted(set(a.lists) & set(b.lists)):
        ch = _list_change(lid, lid, a.lists[lid], b.lists[lid])
        if ch is not None:
            d.list_changes.append(ch)

    for name in ("cc", "mcc", "cc_exclusion", "or_procedures", "diagnosis_map", "procedure_map"):
        tc = _table_change(getattr(a, name), getattr(b, name))
        if not tc.empty:
            d.tables[name] = tc

    for opt in ("validation", "missing_numbers", "mapped_empty_codes"):
        va, vb = getattr(a.evaluation, opt), getattr(b.evaluation, opt)
        if va != vb:
            d.evaluation[opt] = (va, vb)

    if cases is not None:
        ga, gb = a.grouper(code_mode), b.grouper(code_mode)
        for case in cases:
            d.cases += 1
            ra, rb = ga(case), gb(case)
            if ra.drg != rb.drg or ra.status != rb.status:
                d.moves[(_label(ra), _label(rb))] += 1
    return d


def _compare_drgs(d: SchemeDiff, adrg: str, drgs_a: tuple[str, ...], drgs_b: tuple[str, ...]) -> None:
    gone = tuple(x for x in drgs_a if x not in drgs_b)
    new = tuple(x for x in drgs_b if x not in drgs_a)
    if not gone or not new:
        return  # plain additions and removals are listed as DRGs added / removed
    if len(gone) == 1:
        kind = "split" if len(new) > 1 else "recode"
    else:
        kind = "merge" if len(new) == 1 else "regroup"
    d.group_changes.append(GroupChange(kind, adrg, gone, new))


def _label(r) -> str:
    # Failed results all have drg 0000; the status says which failure it was.
    return r.drg if r.grouped else f"{r.drg} ({r.status.value})"


def _amb_text(amb) -> str:
    if amb is None:
        return "none"
    state = "enabled" if amb.enabled else "disabled"
    return f"{state} at {amb.position}: {amb.rule.text()} → {amb.drg}"


def _compare_rule(d: SchemeDiff, kind: str, code: str, ra: Rule, rb: Rule) -> None:
    if ra.canonical() == rb.canonical():
        return
    changes: tuple[ListChange, ...] = ()
    if _shape(ra) == _shape(rb):
        leaves = zip(ra.leaves_with_lists(), rb.leaves_with_lists(), strict=True)
        changes = tuple(
            ch
            for la, lb in leaves
            if (ch := _list_change(la.arg, lb.arg, la.value, lb.value)) is not None
        )
    d.rule_changes.append(RuleChange(kind, code, ra.text(), rb.text(), changes))


def _shape(rule: Rule) -> Any:
    """The rule with list arguments blanked out: equal shapes differ only in list contents."""
    cond = rule.condition
    if cond is not None and cond.arg_kind == "list":
        return (rule.op, "<list>")
    if cond is not None:
        return (rule.op, repr(rule.value) if cond.arg_kind != "regions" else rule.canonical())
    return (rule.op, tuple(_shape(ch) for ch in rule.children))


def _list_change(id_a: str, id_b: str, la: frozenset[str], lb: frozenset[str]) -> ListChange | None:
    if la == lb:
        return None
    return ListChange(id_a, id_b, tuple(sorted(lb - la)), tuple(sorted(la - lb)))


def _table_change(ta: Mapping[str, str], tb: Mapping[str, str]) -> TableChange:
    added = {k: tb[k] for k in tb.keys() - ta.keys()}
    removed = {k: ta[k] for k in ta.keys() - tb.keys()}
    changed = {k: (ta[k], tb[k]) for k in ta.keys() & tb.keys() if ta[k] != tb[k]}
    return TableChange(
        dict(sorted(added.items())), dict(sorted(removed.items())), dict(sorted(changed.items()))
    )
