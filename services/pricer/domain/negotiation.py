"""Negotiation of the payment elements (协商谈判, docs/domain.md §14): drafts, their items, the
comment window, the answers and what the adopted version changed. Pure.

The bureau publishes a draft of a negotiable element with a comment window (dates in China
Standard Time, both inclusive). A draft is one of:

- `policy`: a DRG pricing policy document as `drgdip policy import` takes it (weights, rates,
  level and hospital coefficients). Its items are keyed

      weight:<DRG>                 the group's relative weight (§6)
      rate:<insurance>:<level>     yuan per RW (insurance employee | resident | default,
                                   level 1 | 2 | 3 | default) (§7)
      coefficient:level:<n>        the level coefficient of level n (§7)
      coefficient:hospital:<code>  a hospital's own coefficient
      mean-cost:<DRG>              the group's region mean cost used for outlier typing

- `dip-policy`: a DIP policy with its catalogue ({"policy", "catalogue"}); items `score:<group>`
  (the catalogue's scores); adopted by importing the changed document (no impact computed here);
- `scheme-changeset`: a local scheme change set (docs/scheme-changesets.md), which the grouper
  checks and builds: one item `document`, plus `change:<n>` for the operation `operations[n]`
  (items without a value); its impact on a hospital is the grouper's migration table of the
  hospital's own cases. On adoption the bureau may withdraw an operation or amend it (the
  operation as adopted), and the grouper builds and registers the adopted change set.

A hospital comments on, or objects to, one item of a draft while the window is open, with a
reason and optionally a counter-proposal (a non-negative decimal for a numeric item). The bureau
answers each comment once: accepted, partly accepted or rejected, with a reason. On adoption the
bureau names each item it changes from the draft with the new value, why, and the comments that
caused it; the adopted document is the draft with those values.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from shared.errors import Conflict, Invalid, NotFound

DraftKind = Literal["policy", "dip-policy", "scheme-changeset"]
KINDS: tuple[str, ...] = ("policy", "dip-policy", "scheme-changeset")
CommentKind = Literal["comment", "objection"]
Outcome = Literal["accepted", "partly", "rejected"]
OUTCOMES: tuple[str, ...] = ("accepted", "partly", "rejected")
OPEN, ADOPTED = "open", "adopted"




@dataclass(frozen=True)
class Window:
    """The comment window: comments are taken from `opens` to `closes`, both days inclusive (CST)."""

    opens: date
    closes: date

    def __post_init__(self) -> None:
        if self.closes < self.opens:
            raise Invalid(f"the window closes ({self.closes}) before it opens ({self.opens})",
                          code="INVALID_WINDOW", field="closes")

    def check_open(self, today: date) -> None:
        """409 `NEGOTIATION_NOT_OPEN_YET` before the window, `NEGOTIATION_WINDOW_CLOSED` after it."""
        if today < self.opens:
            raise Conflict(f"comments are taken from {self.opens}", code="NEGOTIATION_NOT_OPEN_YET",
                           field="opens")
        if today > self.closes:
            raise Conflict(f"the comment window closed on {self.closes}", code="NEGOTIATION_WINDOW_CLOSED",
                           field="closes")


# --- items ----------------------------------------------------------------------------------------

def policy_items(document: Mapping[str, Any]) -> dict[str, str]:
    """The negotiable items of a DRG policy document as `Policy.to_document()` writes it
    (normalised keys, decimals as strings)."""
    items: dict[str, str] = {}
    for drg, w in (document.get("weights") or {}).get("table", {}).items():
        items[f"weight:{drg}"] = str(w)
    for kind, per_level in (document.get("rates") or {}).items():
        for level, rate in per_level.items():
            items[f"rate:{kind}:{level}"] = str(rate)
    hospitals = document.get("hospitals") or {}
    for level, c in (hospitals.get("level_coefficients") or {}).items():
        items[f"coefficient:level:{level}"] = str(c)
    for code, c in (hospitals.get("coefficients") or {}).items():
        items[f"coefficient:hospital:{code}"] = str(c)
    for drg, m in (document.get("group_mean_costs") or {}).items():
        items[f"mean-cost:{drg}"] = str(m)
    return items


def _path_of(item: str) -> tuple[str, ...] | None:
    """Where a policy item lives in the normalised document."""
    parts = item.split(":")
    match parts:
        case ["weight", drg]:
            return ("weights", "table", drg)
        case ["rate", kind, level]:
            return ("rates", kind, level)
        case ["coefficient", "level", level]:
            return ("hospitals", "level_coefficients", level)
        case ["coefficient", "hospital", code]:
            return ("hospitals", "coefficients", code)
        case ["mean-cost", drg]:
            return ("group_mean_costs", drg)
    return None


def dip_items(document: Mapping[str, Any]) -> dict[str, str]:
    """The negotiable items of a DIP draft {"policy", "catalogue"}: the catalogue's scores."""
    items: dict[str, str] = {}
    groups = (document.get("catalogue") or {}).get("groups") or {}
    for code, g in (groups.items() if isinstance(groups, Mapping) else ()):
        if isinstance(g, Mapping) and g.get("score") is not None:
            items[f"score:{code}"] = str(g["score"])
    return items


WITHDRAWN = "withdrawn"


def changeset_items(document: Mapping[str, Any]) -> dict[str, str | None]:
    """A change set's items: the whole document, and `change:<n>` for `operations[n]` (the same
    index the grouper's errors name). They carry no value: a counter-proposal is text."""
    items: dict[str, str | None] = {"document": None}
    listed = document.get("operations")
    for n in range(len(listed) if isinstance(listed, list) else 0):
        items[f"change:{n}"] = None
    return items


def operation_label(op: Any) -> str:
    """A change-set operation in a few words: its kind and subject (e.g. `split_drg TB19`)."""
    if not isinstance(op, Mapping):
        return "?"
    drgs = op.get("drgs")
    subject = {"split_drg": op.get("drg"), "rename": op.get("group"), "edit_list": op.get("list"),
               "merge_drgs": "+".join(str(d) for d in drgs) if isinstance(drgs, list) else None}.get(str(op.get("op")))
    return f"{op.get('op')} {subject}" if subject else str(op.get("op"))


def numeric(value: str | None) -> bool:
    """Whether an item has a numeric value (an opaque change-set item has none)."""
    return value is not None


def check_item(items: Mapping[str, str | None], item: str) -> None:
    """422 `UNKNOWN_ITEM` for an item the draft does not have."""
    if item not in items:
        raise Invalid(f"the draft has no item {item!r} (e.g. weight:<DRG>, rate:<insurance>:<level>, "
                      "coefficient:level:<n>)", code="UNKNOWN_ITEM", field="item")


def parse_counter(items: Mapping[str, str | None], item: str, counter: str | None) -> str | None:
    """A counter-proposal for the item: a non-negative decimal for a numeric item (422
    `INVALID_COUNTER_PROPOSAL` otherwise), free text for an opaque one."""
    check_item(items, item)
    if counter is None or not numeric(items[item]):
        return counter
    value = _decimal(counter)
    if value is None or value < 0:
        raise Invalid(f"a counter-proposal for {item} is a non-negative decimal, e.g. \"1.2500\"",
                      code="INVALID_COUNTER_PROPOSAL", field="counter_proposal")
    return str(value)


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        return None
    return value if value.is_finite() else None


# --- answers and adoption -------------------------------------------------------------------------

def check_answerable(answered: bool) -> None:
    """A comment is answered once (409 `COMMENT_ANSWERED`)."""
    if answered:
        raise Conflict("this comment is answered already", code="COMMENT_ANSWERED", field="comment_id")


def check_not_adopted(status: str) -> None:
    if status == ADOPTED:
        raise Conflict("the draft is adopted: the round is over", code="NEGOTIATION_ADOPTED", field="draft_id")


@dataclass(frozen=True)
class ChangeRequest:
    """One item the bureau changes from the draft on adoption."""

    item: str
    value: str | Mapping[str, Any]  # a decimal; for a change-set operation "withdrawn" or the amended operation
    reason: str
    comment_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Change:
    """What the adopted version changed from the draft, and why."""

    item: str
    draft_value: str | None
    adopted_value: str | None
    reason: str
    comment_ids: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item, "draft_value": self.draft_value, "adopted_value": self.adopted_value,
                "reason": self.reason, "comment_ids": list(self.comment_ids)}


def check_changes(kind: str, items: Mapping[str, str | None], changes: Sequence[ChangeRequest],
                  comment_items: Mapping[int, str]) -> None:
    """Each change names an item of the draft once, a new value and a reason; its comments are
    comments on this draft (`comment_items`: id → item). 422 otherwise. A DRG policy's item takes
    a non-negative decimal; a change set's operation (`change:<n>`) is withdrawn (`"withdrawn"`)
    or amended (the operation as adopted, an object with `op`); a DIP draft takes no changes."""
    if changes and kind not in ("policy", "scheme-changeset"):
        raise Invalid("only a DRG policy or a scheme change set is adopted with item changes; import "
                      "the changed document instead", code="CHANGES_NOT_SUPPORTED", field="changes")
    seen: set[str] = set()
    for i, ch in enumerate(changes):
        field = f"changes[{i}]"
        check_item(items, ch.item)
        if ch.item in seen:
            raise Invalid(f"{ch.item} is changed twice", code="DUPLICATE_CHANGE", field=f"{field}.item")
        seen.add(ch.item)
        if kind == "scheme-changeset":
            if not ch.item.startswith("change:"):
                raise Invalid("a change set is changed operation by operation (change:<n>); publish a new "
                              "draft to change the whole", code="CHANGES_NOT_SUPPORTED", field=f"{field}.item")
            if ch.value != WITHDRAWN and not (isinstance(ch.value, Mapping) and isinstance(ch.value.get("op"), str)):
                raise Invalid(f'{ch.item}: the adopted value is "{WITHDRAWN}" or the amended operation '
                              '(an object with "op")', code="INVALID_VALUE", field=f"{field}.value")
        else:
            value = _decimal(ch.value) if isinstance(ch.value, str) else None
            if value is None or value < 0:
                raise Invalid(f"{ch.item}: the adopted value is a non-negative decimal", code="INVALID_VALUE",
                              field=f"{field}.value")
        if not ch.reason.strip():
            raise Invalid("say why the item changed", code="REASON_REQUIRED", field=f"{field}.reason")
        for cid in ch.comment_ids:
            if cid not in comment_items:
                raise NotFound(f"no comment {cid} on this draft", code="COMMENT_NOT_FOUND",
                               field=f"{field}.comment_ids")


def apply_changes(document: Mapping[str, Any], changes: Iterable[ChangeRequest]) -> dict[str, Any]:
    """The normalised policy document with the changed items' values (a deep copy)."""
    out = _copy(document)
    for ch in changes:
        path = _path_of(ch.item)
        if path is None:  # check_changes allows only the items policy_items lists
            raise Invalid(f"{ch.item} cannot be changed", code="UNKNOWN_ITEM", field="item")
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = str(_decimal(str(ch.value)))
    return out


def changeset_adoption(document: Mapping[str, Any],
                       changes: Sequence[ChangeRequest]) -> tuple[dict[str, Any], list[Change]]:
    """The change set as adopted (checked by `check_changes`): each withdrawn operation left out,
    each amended one replaced, the others as published; and what changed, operation by
    operation (`split_drg TB19` → `withdrawn` or `amended: split_drg TB19`). 422
    `NOTHING_ADOPTED` when every operation is withdrawn."""
    ops: list[Any] = _copy(list(document.get("operations") or []))
    out = []
    for ch in changes:
        n = int(ch.item.removeprefix("change:"))
        before = operation_label(ops[n])
        if ch.value == WITHDRAWN:
            ops[n], after = None, WITHDRAWN
        else:
            ops[n] = _copy(ch.value)
            after = f"amended: {operation_label(ops[n])}"
        out.append(Change(ch.item, before[:200], after[:200], ch.reason, ch.comment_ids))
    kept = [op for op in ops if op is not None]
    if not kept:
        raise Invalid("every operation of the change set is withdrawn: there is nothing to adopt",
                      code="NOTHING_ADOPTED", field="changes")
    return _copy(document) | {"operations": kept}, sorted(out, key=lambda c: int(c.item.removeprefix("change:")))


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def adoption_diff(draft: Mapping[str, str | None], adopted: Mapping[str, str | None],
                  requested: Sequence[ChangeRequest]) -> list[Change]:
    """Every item whose adopted value differs from the draft's (compared as decimals), with the
    reason and comments of the change that made it; an item added or removed counts too."""
    why = {ch.item: ch for ch in requested}
    out = []
    for item in sorted(set(draft) | set(adopted)):
        before, after = draft.get(item), adopted.get(item)
        if _same(before, after):
            continue
        ch = why.get(item)
        out.append(Change(item, before, after, ch.reason if ch else "", ch.comment_ids if ch else ()))
    return out


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    da, db = _decimal(a), _decimal(b)
    return da == db if da is not None and db is not None else a == b


def anonymised(comments: Iterable[Mapping[str, Any]], hidden: Collection[str] = (
        "hospital_code", "commented_by", "answered_by")) -> list[dict[str, Any]]:
    """The comments without who sent or answered them (what every hospital may read)."""
    return [{k: v for k, v in c.items() if k not in hidden} for c in comments]


# --- impact ----------------------------------------------------------------------------------------

def impact_rows(current: Sequence[Mapping[str, Any]] | None,
                draft: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per group: cases, payment and 盈亏 under the policy in force and under the draft, and the
    change, from two simulations' per-DRG rows (`SimulationRow.to_dict("drg")`)."""
    before = {r["drg"]: r for r in current or ()}
    out = []
    for r in draft:
        b = before.get(r["drg"])
        out.append(_impact(r["drg"], "drg", b, r))
    return out


def _impact(key: str, key_name: str, b: Mapping[str, Any] | None, r: Mapping[str, Any]) -> dict[str, Any]:
    payment = Decimal(r["drg_payment"])
    current = Decimal(b["drg_payment"]) if b else None
    return {key_name: key, "cases": r["cases"], "fee_for_service": r["fee_for_service"],
            "current_payment": b["drg_payment"] if b else None, "draft_payment": r["drg_payment"],
            "payment_change": None if current is None else str(payment - current),
            "current_profit_loss": b["profit_loss"] if b else None, "draft_profit_loss": r["profit_loss"]}


def impact_total(current: Mapping[str, Any] | None, draft: Mapping[str, Any]) -> dict[str, Any]:
    return _impact("total", "scope", current, draft)
