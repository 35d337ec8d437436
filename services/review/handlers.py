"""Review's event consumer and commands: every priced case is reviewed and announced as
`case-flagged`; the monitoring rules' parameters are imported per region and period.

Every reviewed case gets a `case-flagged` event (with an empty flag list when nothing was
found), so the read model knows the case went through review. A new priced version of a case
is reviewed again and replaces its open flags (kept in `review_flags`). When a case turns out to
be the earlier stay of one already reviewed, the later case is reviewed again (a new review
version) when its split-admission flags change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review import repository
from services.review import special_cases as special
from services.review.domain.parameters import RulesError, RuleSet, parse_rules
from services.review.domain.review import PricedStay, review_cases, share_keys
from shared.db import Versions
from shared.events import CaseFlagged, CasePriced, Envelope


class Rules:
    """The review stage's object: the stored rule-parameter versions, each parsed once."""

    def __init__(self) -> None:
        self.book: Versions[RuleSet] = repository.rule_book()


_DEFAULT_RULES = Rules()


async def on_case_priced(conn: AsyncConnection, envs: Sequence[Envelope],
                         rules: Rules | None = None) -> list[Envelope]:
    """Review a batch of priced cases (reads and writes each table once per batch)."""
    rules = rules or _DEFAULT_RULES
    priced = await asyncio.to_thread(lambda: [_stay(e, e.typed_payload()) for e in envs])
    known = await repository.load_known(conn, {p.facts.psn_key for p in priced},
                                        {p.case_id for p in priced})
    in_force = await rules.book.in_force(conn)
    shares = await repository.load_shares(conn, share_keys(known, priced))
    # reviewing a batch is CPU work: off the event loop, which keeps serving meanwhile
    outcome = await asyncio.to_thread(review_cases, known, priced, rules_on=in_force.on, shares=shares)
    await repository.save(conn, outcome.changed, known, outcome.announcements)
    await repository.save_share_deltas(conn, outcome.share_deltas)
    await special.save_figures(conn, envs, in_force)  # special-case review judges applications on them
    return await asyncio.to_thread(lambda: [
        Envelope.new(CaseFlagged(facts=a.facts, drg=a.drg, flags=list(a.flags), rules=a.rules),
                     case_id=a.case_id, correlation_id=a.correlation_id, producer=repository.NAME)
        for a in outcome.announcements])


def _stay(e: Envelope, p: CasePriced) -> PricedStay:
    return PricedStay.of(e.case_id, p, e.correlation_id)


@dataclass(frozen=True)
class Imported:
    region: str
    version: int
    valid_from: date
    valid_to: date | None
    stored: bool  # False: the same parameters and period are the latest version already


async def import_rules(conn: AsyncConnection, document: bytes, region: str, valid_from: date,
                       valid_to: date | None = None, who: str = "cli") -> Imported:
    """Store the parameters as the region's next version, in force from `valid_from` (the
    latest start, then the highest version, wins for a discharge date). Importing the same
    parameters and period as the latest version again stores nothing."""
    if not region or len(region) > 32:
        raise RulesError("region must be 1 to 32 characters", field="region")
    if valid_to is not None and valid_to < valid_from:
        raise RulesError("the period ends before it starts", field="valid_to")
    params = parse_rules(document)
    latest = await repository.latest_rules(conn, region)
    if latest is not None and (latest["valid_from"], latest["valid_to"]) == (valid_from, valid_to) \
            and parse_rules(latest["document"].encode()) == params:
        return Imported(region, latest["version"], valid_from, valid_to, False)
    version = (latest["version"] if latest else 0) + 1
    await repository.insert_rules(conn, region, version, valid_from, valid_to, params, who)
    await special.record_rules_change(
        conn, who, region,
        None if latest is None else {"version": latest["version"], "valid_from": str(latest["valid_from"]),
                                     "valid_to": str(latest["valid_to"]) if latest["valid_to"] else None,
                                     "rules": orjson.loads(latest["document"])["rules"]},
        {"version": version, "valid_from": str(valid_from), "valid_to": str(valid_to) if valid_to else None,
         "rules": params.to_document()["rules"]})
    return Imported(region, version, valid_from, valid_to, True)

