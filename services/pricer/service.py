"""Pricer service: prices every grouped case with the policy in force, announces `case-priced`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
from fastapi import APIRouter
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.pricer.core import PolicyError, PricingPolicy, choose_policy, price_case
from shared.errors import ApiError
from shared.events import CASE_GROUPED, CaseGrouped, CasePriced, Envelope
from shared.messaging import Outbox
from shared.runtime import Context, Stage
from shared.settings import PricerSettings

NAME = "pricer"
metadata = MetaData()
policies = Table(
    "pricer_policies", metadata,
    Column("policy_id", String(64), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date, nullable=True),
    Column("document", Text, nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
)
results = Table(
    "pricer_results", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("case_id", String(100), nullable=False),
    Column("list_version", Integer, nullable=False),
    Column("grouping_version", Integer, nullable=False),
    Column("drg", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("policy_id", String(64), nullable=True),
    Column("weight", Numeric(10, 4), nullable=True),
    Column("base_rate", Numeric(14, 2), nullable=True),
    Column("coefficient", Numeric(8, 4), nullable=True),
    Column("payment_standard", Numeric(14, 2), nullable=True),
    Column("priced_at", DateTime(timezone=True), nullable=False),
)


async def import_policy(engine: AsyncEngine, document: bytes) -> PricingPolicy:
    """Store a policy (replacing one with the same id); raises `PolicyError` naming the field."""
    try:
        doc = orjson.loads(document)
    except orjson.JSONDecodeError as e:
        raise PolicyError(f"not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise PolicyError("a policy must be a JSON object")
    policy = PricingPolicy.from_document(doc)
    async with engine.begin() as conn:
        await conn.execute(delete(policies).where(policies.c.policy_id == policy.policy_id))
        await conn.execute(insert(policies).values(
            policy_id=policy.policy_id, region=policy.region, valid_from=policy.valid_from,
            valid_to=policy.valid_to, document=document.decode(), imported_at=datetime.now(UTC)))
    return policy


async def load_policies(conn: AsyncConnection) -> list[PricingPolicy]:
    rows = (await conn.execute(select(policies.c.document))).scalars().all()
    return [PricingPolicy.from_document(orjson.loads(d)) for d in rows]


def build(ctx: Context) -> Stage:
    settings = ctx.settings if isinstance(ctx.settings, PricerSettings) else PricerSettings()
    outbox = Outbox(NAME, metadata)

    async def on_start() -> None:
        if settings.policy_file is not None:
            await import_policy(ctx.engine, Path(settings.policy_file).read_bytes())

    async def handle(conn: AsyncConnection, env: Envelope) -> list[Envelope]:
        g: CaseGrouped = env.typed_payload()
        f = g.facts
        # policies are few and small; reading them in the message's transaction keeps one truth
        policy = choose_policy(await load_policies(conn), f.region, f.discharge_date)
        p = price_case(policy, drg=g.drg, group_status=g.status, hospital_code=f.hospital_code,
                       insurance_type=f.insurance_type)
        await conn.execute(insert(results).values(
            case_id=env.case_id, list_version=f.list_version, grouping_version=g.grouping_version,
            drg=g.drg, status=p.status, policy_id=p.policy_id, weight=p.weight,
            base_rate=p.base_rate, coefficient=p.coefficient, payment_standard=p.payment_standard,
            priced_at=datetime.now(UTC)))
        payload = CasePriced(facts=f, drg=g.drg, status=p.status, policy_id=p.policy_id,
                             weight=p.weight, base_rate=p.base_rate, coefficient=p.coefficient,
                             payment_standard=p.payment_standard)
        return [Envelope.new(payload, case_id=env.case_id, correlation_id=env.correlation_id,
                             producer=NAME)]

    router = APIRouter(tags=["pricer"])

    @router.post("/policies", status_code=201)
    async def upload_policy(body: dict) -> dict:
        try:
            policy = await import_policy(ctx.engine, orjson.dumps(body))
        except PolicyError as e:
            field = str(e).split(":", 1)[0]
            raise ApiError(422, "INVALID_POLICY", str(e), field) from None
        return {"policy_id": policy.policy_id, "weights": len(policy.weights)}

    return Stage(NAME, metadata, outbox, router=router,
                 subscriptions=[((CASE_GROUPED,), handle)], on_start=on_start)
