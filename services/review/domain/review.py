"""Reviewing priced cases in order, against the stays of the same person already known.

Pure: the handler loads what is known, `review_cases` decides, the handler stores the result
and announces one `case-flagged` per reviewed case (docs/domain.md §11).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from services.review.domain.rules import Stay, is_readmission, readmission_flags
from shared.events import CaseFacts, CaseFlag

READMISSION_DAYS = 15  # docs/domain.md §11 default; becomes a per-region policy parameter


@dataclass
class Reviewed:
    """A stay as review knows it, with its latest review (review_version 0: not yet reviewed)."""

    stay: Stay
    drg: str
    facts: CaseFacts  # carried to re-announce the stay
    list_version: int | None = None
    review_version: int = 0
    flags: list[CaseFlag] = field(default_factory=list)


@dataclass(frozen=True)
class PricedStay:
    """One priced case to review: what `case-priced` said of it."""

    case_id: str
    facts: CaseFacts
    drg: str
    correlation_id: str


@dataclass(frozen=True)
class Announcement:
    """A review to announce (`case-flagged`), as it stood when made: for a case of this batch,
    or for a later stay flagged again because its earlier stay arrived."""

    case_id: str
    facts: CaseFacts
    drg: str
    flags: tuple[CaseFlag, ...]
    correlation_id: str

    @classmethod
    def of(cls, k: Reviewed, correlation_id: str) -> Announcement:
        return cls(k.stay.case_id, k.facts, k.drg, tuple(k.flags), correlation_id)


def stay_of(case_id: str, f: CaseFacts) -> Stay:
    return Stay(case_id, f.psn_key, f.hospital_code, f.admission_date, f.discharge_date)


def review_cases(known: dict[str, Reviewed], priced: Sequence[PricedStay],
                 days: int = READMISSION_DAYS) -> tuple[dict[str, Reviewed], list[Announcement]]:
    """Review `priced` in order, as if one at a time: each case sees the person's stays in
    `known` and the batch's earlier ones. Returns the stays whose record changed (by case id)
    and the reviews to announce, in order. `known` holds the stored stays of the batch's people
    and cases; it is updated in place."""
    by_person: dict[str, dict[str, Reviewed]] = {}
    for k in known.values():
        by_person.setdefault(k.stay.psn_key, {})[k.stay.case_id] = k
    changed: dict[str, Reviewed] = {}
    out: list[Announcement] = []
    for p in priced:
        f = p.facts
        stay = stay_of(p.case_id, f)
        mine = by_person.setdefault(f.psn_key, {})
        previous = known.get(p.case_id)
        if previous is not None and previous.stay.psn_key != f.psn_key:  # a corrected person number
            by_person.get(previous.stay.psn_key, {}).pop(p.case_id, None)
        others = [k.stay for cid, k in mine.items() if cid != p.case_id]
        # a withdrawn list is not a stay to flag (it stays in history as a version)
        flags = [] if f.withdrawn else readmission_flags(stay, others, days)
        k = Reviewed(stay, p.drg, f, f.list_version, (previous.review_version if previous else 0) + 1,
                     flags)
        known[p.case_id] = mine[p.case_id] = changed[p.case_id] = k
        out.append(Announcement.of(k, p.correlation_id))
        # this stay may be the earlier one of a later stay reviewed before it arrived
        for later in _later_stays(stay, others, days):
            lk = mine[later.case_id]
            if any(fl.related_case_id == stay.case_id for fl in lk.flags):
                continue
            lk.flags = lk.flags + readmission_flags(later, [stay], days)
            lk.review_version += 1
            lk.list_version = lk.list_version or 1
            changed[later.case_id] = lk
            out.append(Announcement.of(lk, p.correlation_id))
    return changed, out


def _later_stays(stay: Stay, others: Iterable[Stay], days: int) -> list[Stay]:
    return [o for o in others if is_readmission(stay, o, days)]
