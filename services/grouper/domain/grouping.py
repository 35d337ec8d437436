"""Grouping received cases as the live stage does (docs/domain.md §4, §5, §7).

Pure: given the scheme in force, the DIP catalogue in force and a `case-received` payload,
`group_case` decides the stored result (with its trace) and the `case-grouped` payload;
`group_cases` does it for a batch, numbering the grouping versions from the stored ones.
The handler loads what is stored, calls these and stores the result.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson

from shared.dip import Catalogue, DipGrouping, dip_case_from_received
from shared.events import CaseFacts, CaseGrouped, CaseReceived, CcLift

from .engine import GroupResult
from .scheme import Scheme

NO_SCHEME = "NO_SCHEME"


def engine_input(p: CaseReceived) -> dict[str, Any]:
    """What the grouping engine reads of a `case-received` payload."""
    return {"sex": p.sex, "age": p.age, "age_days": p.age_days, "birth_weight": p.birth_weight,
            "diagnoses": p.diagnoses, "procedures": p.procedures, "los": p.los}


@dataclass(frozen=True)
class ToGroup:
    """One list version to group: its `case-received` payload (its JSON text as received, which
    the grouper stores, and the model)."""

    case_id: str
    correlation_id: str
    received: str
    payload: CaseReceived

    @classmethod
    def from_json(cls, case_id: str, correlation_id: str, received: str) -> ToGroup:
        """From the payload's JSON text (as stored)."""
        return cls(case_id, correlation_id, received, CaseReceived.model_validate_json(received))


def dip_grouping(catalogue: Catalogue, case_id: str, received: CaseReceived) -> DipGrouping:
    """The `case-grouped` `dip` field: the case's one DIP group, its trace and the DIP inputs
    the pricer needs (`DipCase`), from the `case-received` payload."""
    return DipGrouping.of(catalogue, dip_case_from_received(case_id, received, {}))


def cc_lift(scheme: Scheme, case: Mapping[str, Any], result: GroupResult, *,
            code_mode: str) -> CcLift | None:
    """The secondary diagnosis that alone lifts a case into its CC/MCC group (§4, §11 高套):
    for a DRG ending in 1 (with MCC) or 3 (with CC) whose split counted exactly one code at
    that level (a code at either level for a CC group), the case is grouped again without it;
    when it then lands in another DRG of the same ADRG, that is the group it would have had.
    None otherwise (two codes lift it: neither alone does). `result` with or without its trace
    (without: the CC/MCC findings are read again, which costs a fraction of a traced grouping)."""
    if not result.grouped or len(result.drg) != 4 or result.drg[-1] not in "13":
        return None
    t = result.trace
    cc = t.cc if t is not None else scheme.cc_analysis(case, code_mode=code_mode)
    if cc is None:
        return None
    levels = ("MCC",) if result.drg[-1] == "1" else ("MCC", "CC")
    counted = [f for f in cc.findings if not f.excluded and f.level in levels]
    codes = {f.code for f in counted}
    if len(codes) != 1:
        return None
    drop = {f.position for f in counted}
    diagnoses = [d for i, d in enumerate(case["diagnoses"]) if i not in drop]
    lower = scheme.group(dict(case) | {"diagnoses": diagnoses}, code_mode=code_mode)
    if not lower.grouped or lower.adrg != result.adrg or lower.drg == result.drg:
        return None
    return CcLift(codes=sorted(codes), level=counted[0].level,  # type: ignore[arg-type]
                  drg_without=lower.drg)


@dataclass(frozen=True, slots=True)
class Grouping:
    """One list version grouped: `event` is the `case-grouped` payload (it holds every value of
    the stored result but the trace); `trace` what is stored of the trace, as JSON: the DIP
    part under "dip" when a catalogue was in force, else nothing. The DRG grouping's trace is
    not computed while grouping: it is deterministic for the scheme, the code mode and the
    stored `case-received` payload, and `grouping_trace` recomputes it exactly when asked."""

    case_id: str
    correlation_id: str
    event: CaseGrouped
    trace: str | None


def group_case(item: ToGroup, scheme: Scheme | None, catalogue: Catalogue | None, *,
               code_mode: str, grouping_version: int) -> Grouping:
    """Group one list version with `scheme` (None: no scheme in force, status NO_SCHEME) and,
    where a DIP catalogue is in force, give it its DIP group too (§5)."""
    f = item.payload.facts
    lift: CcLift | None = None
    if scheme is None:
        mdc, adrg, drg, status, name, scheme_id = "0000", "00", "0000", NO_SCHEME, None, "-"
    else:
        case = engine_input(item.payload)
        g = scheme.group(case, code_mode=code_mode)
        mdc, adrg, drg, status, name, scheme_id = g.mdc, g.adrg, g.drg, g.status, g.drg_name, scheme.id
        lift = cc_lift(scheme, case, g, code_mode=code_mode)
    dip = None if catalogue is None else dip_grouping(catalogue, item.case_id, item.payload)
    trace = None if dip is None else orjson.dumps(
        {"dip": dip.model_dump(mode="json", exclude={"case"})}).decode()
    event = CaseGrouped(facts=f, scheme_id=scheme_id, code_mode=code_mode,  # type: ignore[arg-type]
                        mdc=mdc, adrg=adrg, drg=drg, status=status, drg_name=name,
                        grouping_version=grouping_version, dip=dip, cc_lift=lift)
    return Grouping(item.case_id, item.correlation_id, event, trace)


def grouping_trace(scheme: Scheme | None, received: CaseReceived, code_mode: str,
                   stored: str | None) -> dict[str, Any] | None:
    """The trace of a stored grouping, recomputed: the DRG grouping's trace under the scheme and
    code mode it was grouped with, from the stored `case-received` payload, with the stored DIP
    part (`Grouping.trace`). The same as the trace a traced grouping gives at grouping time, as
    the scheme is the same version (a scheme id names one content). None: neither a scheme
    (NO_SCHEME) nor a DIP part."""
    out: dict[str, Any] = {}
    if scheme is not None:
        g = scheme.group(engine_input(received), code_mode=code_mode, trace=True)
        if g.trace is not None:
            out = orjson.loads(g.trace.to_json())
    if stored:
        out |= orjson.loads(stored)
    return out or None


def group_cases(items: Sequence[ToGroup], *, scheme_for: Callable[[CaseFacts], Scheme | None],
                catalogue_on: Callable[[str, date | None], Catalogue | None], code_mode: str,
                latest: Mapping[tuple[str, int], int]) -> list[Grouping]:
    """Group each list version (in the order of `items`) as a new grouping version: one above
    `latest` (the stored highest grouping version per case and list version), counting the
    versions this batch makes. The DIP catalogue is the one in force where care was given."""
    versions = dict(latest)
    out = []
    for item in items:
        f = item.payload.facts
        key = (item.case_id, f.list_version)
        version = versions[key] = versions.get(key, 0) + 1
        out.append(group_case(item, scheme_for(f), catalogue_on(f.treatment_region or f.region,
                                                                f.discharge_date),
                              code_mode=code_mode, grouping_version=version))
    return out


@dataclass
class Migration:
    """What a regroup did: how many cases moved from which DRG to which."""

    scheme_id: str
    cases: int = 0
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def moved(self) -> int:
        return sum(n for (a, b), n in self.moves.items() if a != b)

    def record(self, before: Mapping[tuple[str, int], str], groupings: Sequence[Grouping]) -> None:
        """Count a regrouped batch; `before`: the DRG each (case, list version) had ("-": none)."""
        for g in groupings:
            self.moves[(before.get((g.case_id, g.event.facts.list_version), "-"), g.event.drg)] += 1
        self.cases += len(groupings)
