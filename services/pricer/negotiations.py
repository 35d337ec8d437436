"""What the pricer does for a negotiation round (协商谈判, docs/domain.md §14): load via the
repository, decide via `domain/negotiation.py`, save via the repository. Each takes the caller's
connection (the edge owns the one transaction) and never commits.

- `publish`: the bureau publishes a draft (a policy document as `policy import` takes it, a DIP
  policy with its catalogue, or a scheme change set the gateway had the grouper check) with a
  comment window.
- `impact`: one hospital's stored cases re-priced under the draft and under the policy in force
  (`simulate`, §9): payment and 盈亏 per group and in total.
- `comment`, `answer`: a hospital's comment or objection per item while the window is open, the
  bureau's one answer to each.
- `adopt`: the draft, with the items the bureau changed, imported through `import_policy` (the one
  policy store) as the version in force from a date; the changes are kept with their reasons and
  the comments that caused them. A scheme change set is adopted in two steps around the
  grouper's build: `adopt(..., check_only=True)` answers the change set as adopted (nothing
  stored), the gateway has the grouper build and register exactly those bytes, then `adopt`
  with the grouper's answer records the adoption (the hash must match).
- `report`: the round's items, comments, answers and changes (HTML and CSV).
Every step is appended to the round's history (`pricer_draft_history`) in the same transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from services.pricer import handlers, repository
from services.pricer.domain import negotiation as ng
from services.pricer.domain.dip_policy import read_dip_policy
from services.pricer.domain.negotiation_report import REPORT_COLUMNS, report_html, report_rows
from services.pricer.domain.policy import Policy, PolicyError, parse_policy
from services.pricer.domain.simulation import simulate
from shared.csvexport import to_csv
from shared.errors import Conflict, Invalid, NotFound
from shared.periods import cst_day

PUBLISHED, COMMENTED, ANSWERED, ADOPTED = "published", "commented", "answered", "adopted"


@dataclass(frozen=True)
class Who:
    """Who asks, as the gateway passes it on: the actor (token:<id>), role and a hospital token's hospital."""

    actor: str
    role: str | None = None
    hospital_code: str | None = None


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def publish(conn: AsyncConnection, who: Who, kind: str, title: str, document: dict[str, Any],
                  opens: date, closes: date) -> dict[str, Any]:
    """Store a draft with its items and window (422 naming the field for an invalid document)."""
    window = ng.Window(opens, closes)
    region = policy_id = version = None
    if kind == "policy":
        policy = parse_policy(document)
        document = policy.to_document()
        items: dict[str, str | None] = dict(ng.policy_items(document))
        region, policy_id, version = policy.region, policy.policy_id, policy.version
    elif kind == "dip-policy":
        for key in ("policy", "catalogue"):
            if not isinstance(document.get(key), dict):
                raise PolicyError([(f"document.{key}", "required (a JSON object)")])
        dip, _catalogue = read_dip_policy(orjson.dumps(document["policy"]), orjson.dumps(document["catalogue"]))
        items = dict(ng.dip_items(document))
        region, policy_id, version = dip.region, dip.policy_id, dip.version
    else:
        if not isinstance(document.get("operations"), list):
            raise Invalid("a change set has an operations array", code="INVALID_CHANGESET",
                          field="document.operations")
        items = ng.changeset_items(document)
        region = document.get("region") if isinstance(document.get("region"), str) else None
        policy_id = str(document.get("id"))[:64] if document.get("id") else None
    now = datetime.now(UTC)
    draft_id = await repository.insert_draft(conn, dict(
        kind=kind, title=title, region=region, policy_id=policy_id, version=version, document=_json(document),
        items=_json(items), opens=window.opens, closes=window.closes, status=ng.OPEN, published_by=who.actor,
        published_at=now))
    await repository.record_draft(conn, draft_id, PUBLISHED, actor=who.actor, role=who.role, subject=title[:128],
                                  detail={"kind": kind, "policy_id": policy_id, "version": version,
                                          "items": len(items), "opens": opens, "closes": closes})
    return await _found(conn, draft_id)


async def _found(conn: AsyncConnection, draft_id: int, *, with_document: bool = False,
                 lock: bool = False) -> dict[str, Any]:
    found = await repository.draft(conn, draft_id, with_document=with_document, lock=lock)
    if found is None:
        raise NotFound(f"no negotiation draft {draft_id}", code="DRAFT_NOT_FOUND", field="draft_id")
    return found


async def get(conn: AsyncConnection, draft_id: int) -> dict[str, Any]:
    """A draft with its document, items and window; once adopted, what changed and why."""
    found = await _found(conn, draft_id, with_document=True)
    return found | {"changes": await repository.changes(conn, draft_id)}


# --- impact ----------------------------------------------------------------------------------------

async def impact(conn: AsyncConnection, policies: repository.Policies, draft_id: int, hospital: str,
                 year: int | None) -> dict[str, Any]:
    """One hospital's stored cases (treated in the draft's region; one discharge year when given)
    priced under the draft and under the policy in force on the draft's start (else the latest
    stored version of its policy id), by the simulation (§9): per group and in total."""
    found = await _found(conn, draft_id, with_document=True)
    head = {"draft_id": draft_id, "hospital_code": hospital, "year": year}
    if found["kind"] == "scheme-changeset":
        return head | {"impact": None, "note": "a change set's impact is the hospital's migration table, "
                                               "which the grouper computes (the gateway asks it)"}
    if found["kind"] != "policy":
        return head | {"impact": None,
                       "note": f"no impact is computed for a {found['kind']} draft (DRG policy drafts only)"}
    proposed = parse_policy(found["document"])
    drg, _dip = await policies.in_force(conn)
    current: Policy | None = drg.on(proposed.region, proposed.valid_from) or await policies.drg.latest(
        conn, proposed.policy_id)
    cases = await repository.hospital_cases_to_price(conn, proposed.region, hospital, year)

    def run() -> dict[str, Any]:  # CPU work: off the event loop
        after = simulate(proposed, cases)
        before = simulate(current, cases) if current is not None else None
        return head | {
            "cases": len(cases),
            "current_policy": None if current is None else {"policy_id": current.policy_id,
                                                            "version": current.version,
                                                            "weights_version": current.weights.version},
            "draft_policy": {"policy_id": proposed.policy_id, "version": proposed.version,
                             "weights_version": proposed.weights.version},
            "groups": ng.impact_rows(before.drg_rows() if before else None, after.drg_rows()),
            "total": ng.impact_total(before.total.to_dict("scope") if before else None,
                                     after.total.to_dict("scope")),
        }

    return await asyncio.to_thread(run)


# --- comments and answers --------------------------------------------------------------------------

async def comment(conn: AsyncConnection, who: Who, draft_id: int, item: str, kind: str, reason: str,
                  counter: str | None, now: datetime | None = None) -> dict[str, Any]:
    """A hospital's comment or objection on one item, while the window is open."""
    if not who.hospital_code:
        raise Invalid("a comment comes from a hospital", code="HOSPITAL_REQUIRED", field="hospital")
    found = await _found(conn, draft_id)
    ng.check_not_adopted(found["status"])
    ng.Window(date.fromisoformat(found["opens"]), date.fromisoformat(found["closes"])).check_open(
        cst_day(now or datetime.now(UTC)))
    counter = ng.parse_counter(found["items"], item, counter)
    comment_id = await repository.insert_comment(conn, dict(
        draft_id=draft_id, item=item, kind=kind, hospital_code=who.hospital_code, reason=reason,
        counter_proposal=counter, commented_by=who.actor, commented_at=now or datetime.now(UTC)))
    await repository.record_draft(conn, draft_id, COMMENTED, actor=who.actor, role=who.role,
                                  subject=f"comment {comment_id}",
                                  detail={"item": item, "kind": kind, "hospital": who.hospital_code,
                                          "counter_proposal": counter})
    return (await repository.comments(conn, draft_id, comment_id=comment_id))[0]


async def answer(conn: AsyncConnection, who: Who, draft_id: int, comment_id: int, outcome: str,
                 reason: str) -> dict[str, Any]:
    """The bureau's one answer to a comment: accepted, partly or rejected, with the reason."""
    await _found(conn, draft_id)
    found = await repository.comments(conn, draft_id, comment_id=comment_id)
    if not found:
        raise NotFound(f"no comment {comment_id} on draft {draft_id}", code="COMMENT_NOT_FOUND", field="comment_id")
    ng.check_answerable(found[0]["answer"] is not None)
    await repository.answer_comment(conn, comment_id, answer=outcome, answer_reason=reason, answered_by=who.actor,
                                    answered_at=datetime.now(UTC))
    await repository.record_draft(conn, draft_id, ANSWERED, actor=who.actor, role=who.role,
                                  subject=f"comment {comment_id}",
                                  detail={"item": found[0]["item"], "hospital": found[0]["hospital_code"],
                                          "answer": outcome})
    return (await repository.comments(conn, draft_id, comment_id=comment_id))[0]


async def list_comments(conn: AsyncConnection, draft_id: int, hospital: str | None) -> dict[str, Any]:
    """The bureau: every comment. A hospital: its own (with the answers) and every comment
    anonymised (no hospital, no sender)."""
    await _found(conn, draft_id)
    every = await repository.comments(conn, draft_id)
    if hospital is None:
        return {"draft_id": draft_id, "comments": every}
    return {"draft_id": draft_id, "own": [c for c in every if c["hospital_code"] == hospital],
            "all": ng.anonymised(every)}


# --- adoption --------------------------------------------------------------------------------------

def adopted_changeset(document: dict[str, Any], changes: Sequence[ng.ChangeRequest]) -> tuple[str, list[ng.Change]]:
    """The change set as adopted, as the bytes the grouper builds (and hashes), and what changed."""
    adopted, diff = ng.changeset_adoption(document, changes)
    return orjson.dumps(adopted).decode(), diff


async def adopt(conn: AsyncConnection, policies: repository.Policies, who: Who, draft_id: int,
                valid_from: date, version: int | None, changes: Sequence[ng.ChangeRequest],
                notes: str, *, scheme: dict[str, Any] | None = None, check_only: bool = False) -> dict[str, Any]:
    """Adopt a draft as the version in force from `valid_from`, through the policy import (the
    one store: a version conflict or an overlap is refused as an import is).

    A scheme change set: with `check_only`, the change set as adopted (`changeset_json`, the
    bytes to build) and its changes, nothing stored; else `scheme` is the grouper's answer to
    building and registering those bytes (`POST /changesets:build`), recorded with the adoption
    (409 `SCHEME_MISMATCH` when it built another change set)."""
    found = await _found(conn, draft_id, with_document=True, lock=not check_only)
    ng.check_not_adopted(found["status"])
    every = await repository.comments(conn, draft_id)
    ng.check_changes(found["kind"], found["items"], changes, {c["id"]: c["item"] for c in every})
    version = version or found["version"]
    imported: dict[str, Any] | None = None
    adopted_items: dict[str, str | None] = found["items"]
    cs_diff: list[ng.Change] | None = None
    if found["kind"] == "scheme-changeset":
        adopted_json, cs_diff = adopted_changeset(found["document"], changes)
        version = version or 1
        if check_only:
            return {"draft_id": draft_id, "kind": found["kind"], "policy_id": found["policy_id"], "version": version,
                    "valid_from": valid_from.isoformat(), "region": found["region"],
                    "changeset_json": adopted_json, "changes": [ch.to_dict() for ch in cs_diff]}
        built = (scheme or {}).get("changeset") or {}
        if built.get("sha256") != hashlib.sha256(adopted_json.encode()).hexdigest():
            raise Conflict("the scheme built is not this draft's change set as adopted: build the adopted "
                           "change set first", code="SCHEME_MISMATCH", field="scheme")
        imported = {k: (scheme or {}).get(k) for k in ("scheme", "title", "base", "changeset", "registration")}
    elif check_only:
        raise Invalid("only a scheme change set is checked before its adoption", code="CHANGES_NOT_SUPPORTED",
                      field="check")
    if found["kind"] == "policy":
        doc = ng.apply_changes(found["document"], changes)
        doc |= {"valid_from": valid_from.isoformat(), "version": version,
                "notes": notes or f"adopted from negotiation draft {draft_id}"}
        if any(ch.item.startswith("weight:") for ch in changes):  # another table: another weights version
            doc["weights"] = doc["weights"] | {"version": f"{doc['weights']['version']}-n{draft_id}"}
        policy, stored = await handlers.import_policy(conn, orjson.dumps(doc), who.actor, book=policies.drg)
        if not stored:
            raise Conflict(f"policy {policy.policy_id} version {version} is stored already", code="VERSION_EXISTS",
                           field="version")
        imported = handlers.policy_summary(policy, stored)
        adopted_items = dict(ng.policy_items(policy.to_document()))
    elif found["kind"] == "dip-policy":
        doc = found["document"]
        dip_doc = doc["policy"] | {"valid_from": valid_from.isoformat(), "version": version}
        dip = await handlers.import_dip_policy(conn, orjson.dumps(dip_doc), orjson.dumps(doc["catalogue"]), who.actor)
        imported = handlers.dip_policy_summary(dip)
    diff = [ch.to_dict() for ch in (cs_diff if cs_diff is not None
                                    else ng.adoption_diff(found["items"], adopted_items, changes))]
    await repository.insert_changes(conn, draft_id, diff)
    await repository.update_draft(conn, draft_id, status=ng.ADOPTED, adopted_version=version, adopted_from=valid_from,
                                  adopted_by=who.actor, adopted_at=datetime.now(UTC), adoption_notes=notes or None)
    detail = {"policy_id": found["policy_id"], "version": version, "valid_from": valid_from, "changes": diff}
    await repository.record_draft(conn, draft_id, ADOPTED, actor=who.actor, role=who.role,
                                  subject=f"{found['policy_id']} v{version}", detail=detail)
    if imported is not None:
        await repository.record_policy_adoption(conn, str(found["policy_id"]), version, who.actor, {
            "draft_id": draft_id, "valid_from": valid_from.isoformat(), "changes": diff}
            | ({"scheme": imported} if found["kind"] == "scheme-changeset" else {}))
    return {"draft_id": draft_id, "kind": found["kind"], "status": ng.ADOPTED, "policy_id": found["policy_id"],
            "version": version, "valid_from": valid_from.isoformat(), "changes": diff, "imported": imported}


# --- the round's report and history ---------------------------------------------------------------

async def report(conn: AsyncConnection, draft_id: int, fmt: str) -> str:
    """The round's items with comments or changes, the comments, answers and changes: CSV or HTML."""
    found = await _found(conn, draft_id)
    rows = report_rows(found["items"], await repository.comments(conn, draft_id),
                       await repository.changes(conn, draft_id))
    if fmt == "csv":
        return to_csv(REPORT_COLUMNS, rows)
    return report_html(found, rows)


async def history(conn: AsyncConnection, draft_id: int) -> list[dict[str, Any]]:
    await _found(conn, draft_id)
    return await repository.draft_history_of(conn, draft_id)
