"""Reviewing priced cases in order, against the stays of the same person already known.

Pure: the handler loads what is known (the batch's people's stays, the regional self-pay figures
of the batch's groups, the rule parameters in force), `review_cases` decides, the handler stores
the result and announces one `case-flagged` per review (docs/domain.md §11).

A new priced version of a case is reviewed again: its flags replace the previous version's, and
its previous contributions to the regional figures are taken back.

The regional figures review keeps as it goes (`Share`s by key, `review_group_shares`):
`<region>|<method>|<group>` and `<region>|<method>|adrg:<ADRG>` (self-pay, cost shifting: cases
with a 自费 amount) and `<region>|drg|<DRG>|level:<level>` (cost at hospitals of a level, DRG-priced
cases: upcoding's lower-group mean at the case's level). A stay may be the
earlier stay of one reviewed before it arrived (or a new version of such a stay): the person's
later stays get their split-admission flags evaluated again, and a new review when they change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from services.review.domain.parameters import DEFAULTS, RuleSet
from services.review.domain.rules import (
    READMISSION_REACH,
    CaseFigures,
    Lift,
    Regional,
    Share,
    Stay,
    case_flags,
    is_readmission,
    make_share,
    max_window,
    other_flags_of,
    own_pay_share,
    readmission_days,
    split_admission_flags,
)
from shared.events import CaseFacts, CaseFlag, CasePriced

_ZERO = Decimal(0)
RulesOn = Callable[[str, date | None], RuleSet | None]


def where_treated(f: CaseFacts) -> str:
    """The region whose rules apply: where care was given (off-site cases too)."""
    return f.treatment_region or f.region


@dataclass(slots=True)
class Reviewed:
    """A stay as review knows it, with its latest review (review_version 0: not yet reviewed)."""

    stay: Stay
    drg: str
    facts: CaseFacts  # carried to re-announce the stay
    list_version: int | None = None
    review_version: int = 0
    flags: list[CaseFlag] = field(default_factory=list)
    shares: dict[str, Share] = field(default_factory=dict)  # what it added to each regional figure


def _adrg_of(drg: str) -> str | None:
    """CHS-DRG: the ADRG is the DRG code without its split digit (for events that lack it)."""
    return drg[:3] if len(drg) == 4 and drg[3].isdigit() and drg != "0000" else None


@dataclass(slots=True)  # made for each case: plain, never changed once made (see rules.Stay)
class PricedStay:
    """One priced case to review: what `case-priced` said of it."""

    case_id: str
    facts: CaseFacts
    drg: str
    correlation_id: str
    adrg: str | None = None
    dip_group: str | None = None  # priced by DIP
    hospital_level: int | None = None
    group_mean_cost: Decimal | None = None
    primary_care: bool = False
    lift: Lift | None = None
    coefficient: Decimal | None = None
    _keys: Keys | None = field(default=None, init=False, repr=False, compare=False)  # made by keys()

    @classmethod
    def of(cls, case_id: str, p: CasePriced, correlation_id: str) -> PricedStay:
        lift = p.cc_lift
        return cls(case_id, p.facts, p.drg, correlation_id, adrg=p.adrg or _adrg_of(p.drg),
                   dip_group=p.dip_group, hospital_level=p.hospital_level,
                   group_mean_cost=p.group_mean_cost, primary_care=p.primary_care,
                   coefficient=p.coefficient, lift=None if lift is None else Lift(tuple(lift.codes), lift.level, lift.drg_without,
                                                       lift.drg_without_mean_cost))

    @property
    def method(self) -> str:
        return "dip" if self.dip_group else "drg"

    @property
    def group(self) -> str:
        """The group it was paid by: its DIP group, else its DRG."""
        return self.dip_group or self.drg

    def stay(self) -> Stay:
        return stay_of(self.case_id, self.facts, self.method, self.adrg, self.dip_group)

    def figures(self) -> CaseFigures:
        f = self.facts
        los = (f.discharge_date - f.admission_date).days if f.discharge_date and f.admission_date else None
        return CaseFigures(self.group, los, f.total_cost, f.own_pay, self.group_mean_cost,
                           self.hospital_level, self.primary_care, self.lift, self.coefficient)

    def share_key(self) -> str | None:
        """Its group's key in the regional self-pay figures (None: not a grouped case)."""
        return self.keys().group

    def adrg_key(self) -> str | None:
        """Its ADRG's key in the regional self-pay figures (cost shifting's fallback)."""
        return self.keys().adrg

    def level_key(self, drg: str | None = None) -> str | None:
        """The key of a DRG's (default: its own) cost figures at its hospital's level (DRG-priced
        cases only: upcoding compares with the lower group's mean at the case's level)."""
        if self.method != "drg" or self.hospital_level is None or self.adrg is None:
            return None
        return f"{where_treated(self.facts)}|drg|{drg or self.drg}|level:{self.hospital_level}"

    def lower_level_key(self) -> str | None:
        """The key of the lower group's cost figures at its level, when a diagnosis lifts it."""
        return self.keys().lower_level

    def keys(self) -> Keys:
        """Its keys in the regional figures, each made once."""
        keys = self._keys
        if keys is None:
            keys = self._keys = self._make_keys()
        return keys

    def _make_keys(self) -> Keys:
        region, dip = where_treated(self.facts), self.dip_group
        method = "dip" if dip else "drg"
        group = None if self.adrg is None and dip is None else f"{region}|{method}|{dip or self.drg}"
        adrg = None if self.adrg is None else f"{region}|{method}|adrg:{self.adrg}"
        level = lower = None
        if not dip and self.hospital_level is not None and self.adrg is not None:
            level = f"{region}|drg|{self.drg}|level:{self.hospital_level}"
            if self.lift is not None:
                lower = f"{region}|drg|{self.lift.drg_without or self.drg}|level:{self.hospital_level}"
        return Keys(group, adrg, level, lower)

    def contributions(self, figures: CaseFigures | None = None, keys: Keys | None = None) -> dict[str, Share]:
        """What the case adds to the regional figures (none for a withdrawn list); `figures`,
        `keys`: its `figures()` and `keys()` when the caller has them already."""
        f = self.facts
        if f.withdrawn or f.total_cost is None or f.total_cost <= 0:
            return {}
        k = keys or self.keys()
        out: dict[str, Share] = {}
        if (own := own_pay_share(figures or self.figures())) is not None:
            if k.group is not None:
                out[k.group] = own
            if k.adrg is not None:
                out[k.adrg] = own
        if k.level is not None:
            out[k.level] = make_share(1, f.total_cost, f.own_pay or _ZERO)
        return out

    def regional(self, shares: dict[str, Share], keys: Keys | None = None) -> Regional:
        k = keys or self.keys()
        none = Share()
        return Regional(shares.get(k.group, none) if k.group is not None else none,
                        shares.get(k.adrg, none) if k.adrg is not None else none,
                        shares.get(k.lower_level, none) if k.lower_level is not None else none)


@dataclass(slots=True)
class Keys:
    """A case's keys in the regional figures (None: it has none of that kind)."""

    group: str | None
    adrg: str | None
    level: str | None
    lower_level: str | None


def stay_of(case_id: str, f: CaseFacts, method: str = "drg", adrg: str | None = None,
            dip_group: str | None = None) -> Stay:
    """The stay of a case's facts, priced by `method` in its ADRG or DIP group (None: not grouped)."""
    return Stay(case_id, f.psn_key, f.hospital_code, f.admission_date, f.discharge_date, method, adrg, dip_group,
                f.principal_diagnosis, tuple(f.procedures), f.planned_readmission, f.withdrawn)


@dataclass(slots=True)
class Announcement:
    """A review to announce (`case-flagged`), as it stood when made: for a case of this batch,
    or for a later stay whose split-admission flags changed because an earlier stay arrived."""

    case_id: str
    facts: CaseFacts
    drg: str
    flags: tuple[CaseFlag, ...]
    correlation_id: str
    review_version: int = 1
    rules: str = DEFAULTS.label
    readmission_days: int | None = None  # since the person's previous discharge at the hospital

    @classmethod
    def of(cls, k: Reviewed, correlation_id: str, rules: RuleSet,
           readmission_days: int | None = None) -> Announcement:
        return cls(k.stay.case_id, k.facts, k.drg, tuple(k.flags), correlation_id, k.review_version,
                   rules.label, readmission_days)


@dataclass
class Outcome:
    """What a batch's review changed: the stays (by case id), the reviews to announce in
    order, and the change of each group's regional figures."""

    changed: dict[str, Reviewed] = field(default_factory=dict)
    announcements: list[Announcement] = field(default_factory=list)
    share_deltas: dict[str, Share] = field(default_factory=dict)



def share_keys(known: dict[str, Reviewed], priced: Iterable[PricedStay]) -> set[str]:
    """The keys of the regional figures a batch reads or changes."""
    keys: set[str] = set()
    for p in priced:
        k = p.keys()
        keys.update(key for key in (k.group, k.adrg, k.level, k.lower_level) if key is not None)
        if (r := known.get(p.case_id)) is not None:
            keys |= set(r.shares)
    return keys


def review_cases(known: dict[str, Reviewed], priced: Sequence[PricedStay], *,
                 rules_on: RulesOn = lambda _r, _d: None,
                 shares: dict[str, Share] | None = None) -> Outcome:
    """Review `priced` in order, as if one at a time: each case sees the person's stays in
    `known` and the batch's earlier ones, and the regional figures of its group in `shares`
    as the earlier cases left them. `known` holds the stored stays of the batch's people and
    cases, `shares` the stored figures of `share_keys`; both are updated in place. `rules_on`
    gives the parameters in force for a region and discharge date (None: the defaults)."""
    shares = {} if shares is None else shares
    before: dict[str, Share] = {}  # the figures changed, as they were before the batch

    none = Share()

    def add(key: str, s: Share, sign: int) -> None:
        now = shares.get(key, none)
        if key not in before:
            before[key] = now
        shares[key] = now.plus(s) if sign > 0 else now.minus(s)

    by_person: dict[str, dict[str, Reviewed]] = {}
    for k in known.values():
        by_person.setdefault(k.stay.psn_key, {})[k.stay.case_id] = k
    out = Outcome()

    in_force: dict[tuple[str, date | None], RuleSet] = {}  # the batch's look-ups, each made once

    def rules_for(f: CaseFacts) -> RuleSet:
        key = (f.treatment_region or f.region, f.discharge_date)
        found = in_force.get(key)
        if found is None:
            found = in_force[key] = rules_on(*key) or DEFAULTS
        return found

    for p in priced:
        f = p.facts
        rules = rules_for(f)
        stay = p.stay()
        mine = by_person.setdefault(f.psn_key, {})
        previous = known.get(p.case_id)
        affected: list[dict[str, Reviewed]] = [mine]
        if previous is not None:
            if previous.stay.psn_key != f.psn_key:  # a corrected person number
                old = by_person.get(previous.stay.psn_key, {})
                old.pop(p.case_id, None)
                affected.append(old)
            for old_key, taken in previous.shares.items():
                add(old_key, taken, -1)
        others = [k.stay for cid, k in mine.items() if cid != p.case_id]
        figures, keys = p.figures(), p.keys()
        flags: list[CaseFlag] = []
        if not f.withdrawn:  # a withdrawn list is not a stay to flag (it stays in history)
            flags = split_admission_flags(stay, others, rules.params.split_admission) + \
                case_flags(figures, stay, p.regional(shares, keys), rules.params)
        contributions = p.contributions(figures, keys)
        for key, s in contributions.items():
            add(key, s, 1)
        k = Reviewed(stay, p.drg, f, f.list_version, (previous.review_version if previous else 0) + 1,
                     flags, contributions)
        known[p.case_id] = mine[p.case_id] = out.changed[p.case_id] = k
        out.announcements.append(Announcement.of(k, p.correlation_id, rules, readmission_days(stay, others)))
        for person in affected:
            _review_later_stays(person, previous.stay if previous else None, stay, p.correlation_id,
                                rules_for, out)
    out.share_deltas = {key: shares[key].minus(was) for key, was in before.items()}
    return out


def _review_later_stays(person: dict[str, Reviewed], before: Stay | None, stay: Stay,
                        correlation_id: str, rules_for: Callable[[CaseFacts], RuleSet],
                        out: Outcome) -> None:
    """Evaluate again the split-admission flags of the person's stays that `stay` (or its
    previous version `before`) may be the earlier stay of; announce those that change."""
    for cid, lk in person.items():
        if cid == stay.case_id:
            continue
        rules = rules_for(lk.facts)
        reach = max(max_window(rules.params.split_admission), READMISSION_REACH)
        related = any(fl.related_case_id == stay.case_id for fl in lk.flags)
        if not (related or is_readmission(stay, lk.stay, reach)
                or (before is not None and is_readmission(before, lk.stay, reach))):
            continue
        others = [k.stay for other, k in person.items() if other != cid]
        flags = split_admission_flags(lk.stay, others, rules.params.split_admission) + \
            other_flags_of(lk.flags)
        days = readmission_days(lk.stay, others)
        was = readmission_days(lk.stay, [o for o in others if o.case_id != stay.case_id]
                               + ([before] if before is not None else []))
        if flags == lk.flags and days == was:
            continue
        lk.flags = flags
        lk.review_version += 1
        lk.list_version = lk.list_version or 1
        out.changed[cid] = lk
        out.announcements.append(Announcement.of(lk, correlation_id, rules, days))
