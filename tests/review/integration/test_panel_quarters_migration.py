"""Migration review_0005: the panel becomes a membership per quarter; a member registered
before keeps their ties for every quarter that has applications."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from shared import migrate
from shared.db import create_engine


async def test_members_registered_before_keep_their_ties_in_every_quarter_with_applications(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    try:
        await migrate.upgrade(engine, "review", "review_0004")
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO review_panel_members VALUES ('0123456789ab', '[\"H1\"]', 1, 'token:admin', "
                "'2024-04-01 00:00:00')"))
            for i, period in enumerate(("2024Q1", "2024Q2", "2024Q2")):
                await conn.execute(text(
                    "INSERT INTO review_special_cases (case_id, hospital_code, region, period, reason, text, evidence, "
                    "figures, status, applied_by, applied_at) VALUES (:c, 'H2', 'R', :p, 'long_stay', 't', '[]', "
                    "'{}', 'pending', 'token:h', '2024-04-01 00:00:00')"), {"c": f"C{i}", "p": period})
        await migrate.upgrade(engine, "review")
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT token_id, period, hospitals, active FROM review_panel_quarters ORDER BY period"))).all()
        assert [tuple(r) for r in rows] == [("0123456789ab", "2024Q1", '["H1"]', 1),
                                            ("0123456789ab", "2024Q2", '["H1"]', 1)]
    finally:
        await engine.dispose()
