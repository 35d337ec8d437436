"""A priced case's special-case figures are kept apart from what its stay holds already (its
facts and columns) and read back whole: the `CaseData` of its latest `case-priced`, field by field
as `sc.to_json` writes it; a stay stored with the whole figures (before) reads as it was."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.review import handlers as review_handlers
from services.review import repository
from services.review.cli import in_transaction
from services.review.domain import special_cases as sc
from shared.events import CaseFacts, CasePriced, Envelope


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    return str(request.getfixturevalue("new_pg_database")("review_figures"))


def _priced(i: int, **more: object) -> CasePriced:
    facts = CaseFacts(hospital_code="H35050001", setl_id=f"S{i:05d}", region="350500", psn_key=f"p{i}",
                      admission_date=date(2024, 5, 1), discharge_date=date(2024, 5, 20),
                      total_cost=Decimal("20000.10"), treatment_region="350600", procedures=["96.7101", "38.9301"],
                      fees={"01": Decimal("150.5"), "08": Decimal("9000.00")}, icu_hours=30, **more)
    return CasePriced(facts=facts, drg="FM19", status="PRICED", case_type="high_outlier",
                      payment=Decimal("10000.00"), group_mean_cost=Decimal("15000.00"),
                      breakdown={"high_threshold": "18000.00"})


def test_the_figures_read_back_are_those_of_the_latest_price(db_url: str) -> None:
    cases = {"H35050001-S00001": _priced(1), "H35050001-S00002": _priced(2, withdrawn=True),
             "H35050001-S00003": CasePriced(facts=CaseFacts(hospital_code="H35050001", setl_id="S00003",
                                                            region="350500", psn_key="p3"), drg="0000",
                                            status="NOT_GROUPED")}

    async def review(conn: AsyncConnection) -> None:
        await review_handlers.on_case_priced(conn, [Envelope.new(p, case_id=cid, correlation_id="c", producer="test")
                                                    for cid, p in cases.items()])

    async def read(conn: AsyncConnection) -> dict[str, dict]:
        return {cid: (await repository.case_figures_of(conn, cid))["figures"] for cid in cases}  # type: ignore[index]

    async def whole(conn: AsyncConnection) -> None:  # a stay stored with its whole figures, as before
        await conn.execute(update(repository.stays).where(repository.stays.c.case_id == "H35050001-S00001")
                           .values(figures='{"case_id":"H35050001-S00001","fees":{},"los":99}'))

    in_transaction(db_url, review)
    stored = in_transaction(db_url, read)
    assert stored == {cid: orjson.loads(orjson.dumps(sc.to_json(sc.case_data(cid, p)))) for cid, p in cases.items()}
    assert sc.from_json(stored["H35050001-S00001"]) == sc.case_data("H35050001-S00001", cases["H35050001-S00001"])
    in_transaction(db_url, whole)
    assert in_transaction(db_url, read)["H35050001-S00001"] == {"case_id": "H35050001-S00001", "fees": {}, "los": 99}
