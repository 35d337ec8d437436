"""DIP command line: `dip build-catalogue` (from lists and from the grouper's store),
`dip group` and `compare`, on a synthetic region from the generator. The commands combine the
ingest parser, the grouper's store and scheme and the pricer's DIP domain (`drgdip/dip_cli.py`)."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from paths import SHARED
from pricer_testkit import policy_doc
from typer.testing import CliRunner

from drgdip.dip_cli import compare_command, dip_app, dip_case_from_list, stored_cases
from services.pricer.domain.dip_pricing import DipPoints, DipPolicy
from shared.dip import Catalogue, DipCase

D = Decimal
SCHEME = SHARED / "schemes" / "chs-drg-1.1"


app = typer.Typer()
app.add_typer(dip_app, name="dip")
app.command("compare")(compare_command)
runner = CliRunner()


@dataclasses.dataclass(frozen=True)
class Region:
    lists_file: Path
    hospitals_file: Path
    lists: list[dict[str, Any]]
    valid: list[DipCase]  # the lists the national parser accepts


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Region:
    if not SCHEME.is_dir():
        pytest.skip(f"scheme not found at {SCHEME}")
    from drgdip.generate import RegionGenerator
    from services.ingest.domain.national import ListRejected

    gen = RegionGenerator(SCHEME, hospitals=8, cases=2000, seed=11)  # 2022–2024
    lists = list(gen)
    folder = tmp_path_factory.mktemp("region")
    lists_file = folder / "region.jsonl"
    lists_file.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lists) + b"\nnot json\n")
    hospitals_file = folder / "region.jsonl.hospitals.json"
    hospitals_file.write_bytes(orjson.dumps([h.to_dict() for h in gen.hospitals]))
    valid = []
    for x in lists:
        try:
            valid.append(dip_case_from_list(x))
        except ListRejected:
            continue
    return Region(lists_file, hospitals_file, lists, valid)


def invoke(*args: Any) -> Any:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_build_catalogue_from_lists_and_group_every_list(region: Region, tmp_path: Path) -> None:
    out = tmp_path / "cat"
    result = invoke("dip", "build-catalogue", "--region", "R", "--years", "2022-2024",
                    "--min-cases", 2, "--or-procedures", SCHEME / "or_procedures.tsv",
                    "--hospitals", region.hospitals_file, "--input", region.lists_file,
                    "--out-dir", out)
    assert "cases in core groups" in result.stdout and "groups by type" in result.stdout
    catalogue = Catalogue.from_document(orjson.loads((out / "dip-catalogue-R-2025.json").read_bytes()))
    assert catalogue.data_years == (2022, 2023, 2024) and catalogue.min_cases == 2
    assert catalogue.report.cases_in == len(region.valid)
    assert catalogue.treatment.or_procedures  # the scheme's OR list was read
    report = orjson.loads((out / "dip-catalogue-report.json").read_bytes())
    assert report["cases_in_scope"] == catalogue.report.cases_in_scope
    with (out / "dip-groups.csv").open(encoding="utf-8") as fh:
        assert {r["code"] for r in csv.DictReader(fh)} == set(catalogue.groups)

    grouped = tmp_path / "groups.jsonl"
    invoke("dip", "group", "--catalogue", out / "dip-catalogue-R-2025.json",
           "--input", region.lists_file, "--output", grouped, "--trace")
    lines = [orjson.loads(x) for x in grouped.read_bytes().splitlines()]
    assert [x["id"] for x in lines] == [c.case_id for c in region.valid]  # one group each
    assert all(x["dip_group"] in catalogue.groups and x["trace"] for x in lines)
    assert {x["kind"] for x in lines} == {"core", "comprehensive"}


def _fill_grouper_db(url: str, lists: list[dict[str, Any]]) -> dict[str, Decimal]:
    """Store lists as the grouper does (`case-received` payloads); the first list gets a
    second version with a new cost, the second a withdrawn latest version. Returns the
    expected cost per case."""
    from sqlalchemy import insert

    from services.grouper.repository import cases
    from services.ingest.domain import intake
    from services.ingest.domain.national import case_fields, parse_settlement_list
    from shared import migrate
    from shared.db import create_engine

    rows, costs = [], {}
    for i, doc in enumerate(lists):
        f = case_fields(parse_settlement_list(doc))
        versions = [(1, f, False)]
        if i == 0:
            versions.append((2, f._replace(total_cost=D("123456.78")), False))
        if i == 1:
            versions.append((2, f, True))
        for version, fields, withdrawn in versions:
            payload = intake.case_received(fields, list_version=version, psn_key="k",
                                         withdrawn=withdrawn)
            rows.append(dict(case_id=f"{f.hospital_code}-{f.setl_id}", list_version=version,
                             region=f.region, discharge_date=f.discharge_date, correlation_id="t",
                             payload=orjson.dumps(payload.model_dump(mode="json")).decode()))
            costs[f"{f.hospital_code}-{f.setl_id}"] = fields.total_cost

    async def run() -> None:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine, "grouper")
            async with engine.begin() as conn:
                await conn.execute(insert(cases), rows)
        finally:
            await engine.dispose()

    asyncio.run(run())
    return costs


def test_build_catalogue_from_the_grouper_store(region: Region, tmp_path: Path) -> None:
    from services.ingest.domain.national import ListRejected, parse_settlement_list

    def parses(doc: dict[str, Any]) -> bool:
        try:
            parse_settlement_list(doc)
            dip_case_from_list(doc)
        except ListRejected:
            return False
        return True

    stored = [x for x in region.lists if parses(x)][::5]  # spread over the three years
    url = f"sqlite+aiosqlite:///{tmp_path / 'grouper.db'}"
    costs = _fill_grouper_db(url, stored)

    loaded = {c.case_id: c for c in stored_cases(url, 2022, 2024, {})}
    assert len(loaded) == len(costs)  # one case per list: its latest version
    assert all(loaded[k].total_cost == v for k, v in costs.items())
    assert sum(c.withdrawn for c in loaded.values()) == 1

    out = tmp_path / "cat"
    result = invoke("dip", "build-catalogue", "--region", "R", "--years", "2022-2024",
                    "--min-cases", 2, "--hospitals", region.hospitals_file, "--db", url,
                    "--out-dir", out)
    assert "withdrawn 1" in result.stdout
    report = orjson.loads((out / "dip-catalogue-report.json").read_bytes())
    assert report["cases_in"] == len(costs) and report["exclusions"]["withdrawn"] == 1
    catalogue = Catalogue.from_document(orjson.loads((out / "dip-catalogue-R-2025.json").read_bytes()))
    # the hospital levels came from the generator's hospitals file
    assert any(set(g.level_mean_costs) - {"all"} for g in catalogue.groups.values())


def test_compare_totals_are_the_per_case_prices(region: Region, tmp_path: Path) -> None:
    from services.grouper.domain import load_scheme

    cat_dir = tmp_path / "cat"
    invoke("dip", "build-catalogue", "--region", "R", "--years", "2022-2024", "--min-cases", 2,
           "--input", region.lists_file, "--out-dir", cat_dir)
    # a DRG policy with a weight for every DRG the lists group into
    group = load_scheme(SCHEME).grouper("raw")
    drgs = {group({"sex": 1, "age": 50, "diagnoses": [c.principal_diagnosis, *c.secondary_diagnoses],
                   "procedures": list(c.procedures)}).drg for c in region.valid}
    drg_policy = tmp_path / "drg.json"
    drg_policy.write_bytes(orjson.dumps(policy_doc(
        region="R", weights={"version": "w-cli", "table": {d: "1.2" for d in drgs}},
        group_mean_costs={d: "9000" for d in drgs})))
    dip_policy = tmp_path / "dip.json"
    dip_policy.write_text(DipPolicy(
        policy_id="dip-cli", version=1, region="R", valid_from="2024-01-01",
        points=DipPoints(provisional_point_value=D("80"))).model_dump_json())

    out = tmp_path / "cmp"
    result = invoke("compare", "--drg-policy", drg_policy, "--dip-policy", dip_policy,
                    "--catalogue", cat_dir / "dip-catalogue-R-2025.json", "--scheme", SCHEME,
                    "--input", region.lists_file, "--out-dir", out)
    assert "DIP − DRG" in result.stdout

    per_case = [orjson.loads(x) for x in (out / "comparison-cases.jsonl").read_bytes().splitlines()]
    assert len(per_case) == len(region.valid)
    expected: dict[str, list[Any]] = {}
    for c in per_case:  # unpriced: paid by item, at cost
        e = expected.setdefault(c["hospital_code"], [0, D(0), D(0)])
        e[0] += 1
        e[1] += D(c["drg_payment"] or c["total_cost"])
        e[2] += D(c["dip_payment"] or c["total_cost"])
    with (out / "comparison-hospitals.csv").open(encoding="utf-8") as fh:
        table = {r["hospital_code"]: [int(r["cases"]), D(r["drg_payment"]), D(r["dip_payment"])]
                 for r in csv.DictReader(fh)}
    assert table == expected
    total = orjson.loads((out / "comparison.json").read_bytes())["total"]
    assert D(total["drg_payment"]) == sum(e[1] for e in expected.values())
    assert D(total["dip_payment"]) == sum(e[2] for e in expected.values())
    assert any(c["drg_payment"] is not None for c in per_case)
    assert any(c["dip_payment"] is not None for c in per_case)


def test_point_value_prints_the_figure_and_its_inputs(region: Region, tmp_path: Path) -> None:
    from services.pricer.domain.dip_catalogue import catalogue_budget_point_value

    cat_dir = tmp_path / "cat"
    invoke("dip", "build-catalogue", "--region", "R", "--years", "2022-2024", "--min-cases", 2,
           "--hospitals", region.hospitals_file, "--input", region.lists_file, "--out-dir", cat_dir)
    cat_file = cat_dir / "dip-catalogue-R-2025.json"
    catalogue = Catalogue.from_document(orjson.loads(cat_file.read_bytes()))
    out = tmp_path / "pv.json"
    result = invoke("dip", "point-value", "--catalogue", cat_file, "--input", region.lists_file,
                    "--hospitals", region.hospitals_file, "--out", out)
    doc = orjson.loads(out.read_bytes())
    # the same figure as the domain's, over the catalogue's own data years and weights
    levels = {h["code"]: h["level"] for h in orjson.loads(region.hospitals_file.read_bytes())}
    cases = [c.model_copy(update={"region": "R", "hospital_level": c.hospital_level or levels.get(c.hospital_code)})
             for c in region.valid]
    pv = catalogue_budget_point_value(catalogue, cases)
    assert D(doc["budget_point_value"]) == pv
    assert f"budget point value: {pv}" in result.stdout
    assert [(y["year"], y["weight"]) for y in doc["years"]] == [(2022, 1), (2023, 2), (2024, 7)]
    num = sum(y["weight"] * D(y["cost"]) for y in doc["years"])
    den = sum(y["weight"] * D(y["scores"]) for y in doc["years"])
    assert abs(num / den - pv) < D("0.000001")
    # other years and weights: the newest year alone
    only = invoke("dip", "point-value", "--catalogue", cat_file, "--input", region.lists_file,
                  "--years", "2024", "--year-weights", "1")
    assert "2022" not in only.stdout.split("\n", 1)[1] and "budget point value:" in only.stdout
    bad = runner.invoke(app, ["dip", "point-value", "--catalogue", str(cat_file), "--input",
                              str(region.lists_file), "--years", "2023-2024"])
    assert bad.exit_code == 2 and "3 weights for 2 data years" in bad.output
