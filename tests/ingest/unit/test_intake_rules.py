"""The stage's rules for a decided list (`intake.record`), without a database: a new version, a
duplicate, a withdrawal (all or nothing), a rejection."""

from __future__ import annotations

import json

from paths import SHARED

from services.ingest.domain import intake
from services.ingest.domain.intake import Changes, Stored

HSA = SHARED / "testdata" / "hsa"


def message(name: str) -> dict:
    return json.loads((HSA / f"{name}.json").read_text(encoding="utf-8"))


def stored(i: int, fmt: str, doc: dict) -> Stored:
    return Stored(i, fmt, json.dumps(doc).encode(), None, f"c{i}")


def decide_and_record(rows: list[Stored], changes: Changes) -> list[intake.Outcome]:
    return [intake.record(r, intake.decide(r, None), changes, "secret-key") for r in rows]


def test_a_list_then_its_duplicate_then_its_withdrawal() -> None:
    msg = message("4101-01")
    changes = Changes({}, producer="ingest")
    out = decide_and_record([stored(1, "4101", msg), stored(2, "native", msg["input"]),
                             stored(3, "4102", message("4102-01"))], changes)
    case_id = out[0].case_id
    assert [(o.status, o.case_id, o.list_version) for o in out] == [
        ("accepted", case_id, 1), ("duplicate", case_id, 1), ("withdrawn", case_id, 2)]
    assert [(v.list_version, v.status) for v in changes.versions] == [(1, "active"), (2, "withdrawn")]
    assert [e.payload["facts"]["withdrawn"] for e in changes.events] == [False, True]
    assert [r.status for r in changes.raw] == ["accepted", "duplicate", "accepted"]


def test_a_withdrawal_naming_an_unknown_list_applies_nothing() -> None:
    msg = message("4101-01")
    changes = Changes({}, producer="ingest")
    decide_and_record([stored(1, "4101", msg)], changes)
    unknown = message("4102-01")
    unknown["input"]["data"]["stastinfo"].append(dict(unknown["input"]["data"]["stastinfo"][0], setl_id="NOPE"))
    [outcome] = decide_and_record([stored(2, "4102", unknown)], changes)
    assert outcome.status == "rejected"
    assert [(p.field, p.code) for p in outcome.problems] == [("input.data.stastinfo[1].setl_id", "UNKNOWN_LIST")]
    assert len(changes.versions) == 1  # only the list itself: nothing was withdrawn
    assert outcome.rejection().code == "LIST_REJECTED"


def test_a_malformed_body_is_rejected_with_its_problem() -> None:
    changes = Changes({}, producer="ingest")
    [outcome] = decide_and_record([Stored(1, "native", b"{not json", None, "c")], changes)
    assert outcome.status == "rejected" and outcome.problems[0].code == "MALFORMED_JSON"
    assert changes.raw[0].status == "rejected" and not changes.versions
