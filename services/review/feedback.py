"""What review does for the feedback channel (意见收集, docs/domain.md §14): load via the
repository, decide via `domain/feedback.py`, save via the repository. Each takes the caller's
connection (the edge owns the one transaction) and never commits.

- `send`: a hospital's opinion (its doctors send through the hospital's token), naming only the
  hospital's own cases.
- `step`: the bureau triages, answers and closes an opinion, one step at a time.
- `stats`: counts and answer times in working days, for the bureau's indicators.
Every step is appended to `review_audit` (subject `feedback:<id>`) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review import repository
from services.review.domain import feedback as fb
from services.review.domain.parameters import DEFAULTS, RuleSet
from services.review.special_cases import Who
from shared.errors import Invalid, NotFound
from shared.periods import CST, InForce

SENT = "feedback.sent"
ACTIONS = {"triage": "feedback.triaged", "answer": "feedback.answered", "close": "feedback.closed"}


def _subject(feedback_id: int) -> str:
    return f"feedback:{feedback_id}"


async def send(conn: AsyncConnection, who: Who, category: str, text: str, author: str | None,
               case_ids: Sequence[str]) -> dict[str, Any]:
    if not who.hospital_code:
        raise Invalid("an opinion comes from a hospital", code="HOSPITAL_REQUIRED", field="hospital")
    case_ids = list(dict.fromkeys(case_ids))
    fb.check_cases(case_ids, await repository.case_owners(conn, case_ids), who.hospital_code)
    feedback_id = await repository.insert_feedback(conn, dict(
        hospital_code=who.hospital_code, category=category, text=text, author=author,
        case_ids=orjson.dumps(case_ids).decode(), status=fb.NEW, sent_by=who.actor, sent_at=datetime.now(UTC)))
    await repository.record(conn, SENT, actor=who.actor, role=who.role, subject=_subject(feedback_id),
                            after={"status": fb.NEW, "category": category, "case_ids": case_ids})
    return await get(conn, who, feedback_id)


async def get(conn: AsyncConnection, who: Who, feedback_id: int) -> dict[str, Any]:
    """One opinion with its history (a hospital: its own; another's is 404)."""
    found = await repository.feedback_of(conn, feedback_id)
    if found is None or (who.hospital_code and found["hospital_code"] != who.hospital_code):
        raise NotFound(f"no opinion {feedback_id}", code="FEEDBACK_NOT_FOUND", field="feedback_id")
    history = await repository.audit_rows(conn, subject=_subject(feedback_id))
    return found | {"history": [{k: h[k] for k in ("at", "action", "actor", "role", "reason")} for h in history]}


async def step(conn: AsyncConnection, who: Who, feedback_id: int, step_name: str, note: str | None,
               answer: str | None) -> dict[str, Any]:
    """Triage, answer or close an opinion (bureau)."""
    found = await repository.feedback_of(conn, feedback_id, lock=True)
    if found is None:
        raise NotFound(f"no opinion {feedback_id}", code="FEEDBACK_NOT_FOUND", field="feedback_id")
    status = fb.next_status(found["status"], step_name, answer)
    now = datetime.now(UTC)
    values: dict[str, Any] = {"status": status}
    if step_name == "triage":
        values |= {"triaged_by": who.actor, "triaged_at": now, "triage_note": note}
    elif step_name == "answer":
        values |= {"answer": answer, "answered_by": who.actor, "answered_at": now}
    else:
        values |= {"closed_by": who.actor, "closed_at": now}
    await repository.update_feedback(conn, feedback_id, **values)
    await repository.record(conn, ACTIONS[step_name], actor=who.actor, role=who.role, subject=_subject(feedback_id),
                            before={"status": found["status"]}, after={"status": status},
                            reason=answer if step_name == "answer" else note)
    return await get(conn, Who(who.actor, who.role), feedback_id)


async def stats(conn: AsyncConnection, rules: InForce[RuleSet], region: str | None, first: date | None,
                last: date | None) -> dict[str, Any]:
    """Counts and answer times of the opinions sent from `first` to `last` (CST days, inclusive),
    answer times in working days of the region's review calendar (the default one without a region)."""
    found = rules.on(region, datetime.now(UTC).astimezone(CST).date()) if region else None
    calendar = (found or DEFAULTS).params.flag_workflow
    since = datetime.combine(first, time(), CST) if first else None
    until = datetime.combine(last + timedelta(days=1), time(), CST) if last else None
    rows = await repository.feedback_times(conn, since, until)
    return {"from": first.isoformat() if first else None, "to": last.isoformat() if last else None,
            "region": region, **fb.stats(rows, calendar)}
