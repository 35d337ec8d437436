"""Ingest service: accepts a settlement list, stores it verbatim, announces `case-received`."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import orjson
import pydantic
from fastapi import APIRouter, Header, Request
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
    select,
)

from services.ingest import core
from shared.errors import ApiError, validation_details
from shared.events import Envelope
from shared.messaging import Outbox
from shared.runtime import Context, Stage
from shared.settings import IngestSettings

NAME = "ingest"
metadata = MetaData()
lists = Table(
    "ingest_lists", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("case_id", String(100), nullable=False),
    Column("hospital_code", String(32), nullable=False),
    Column("setl_id", String(64), nullable=False),
    Column("list_version", Integer, nullable=False),
    Column("format", String(16), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("raw_sha256", String(64), nullable=False),
    Column("correlation_id", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)


def parse_list(raw: bytes) -> core.SettlementList:
    """Decode and check one list; an `ApiError` names the field and the reason."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, "MALFORMED_JSON", f"body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ApiError(422, "INVALID_LIST", "a settlement list must be a JSON object")
    try:
        return core.SettlementList.model_validate(doc)
    except pydantic.ValidationError as e:
        details = validation_details(e.errors())
        first = details[0]
        raise ApiError(422, "INVALID_FIELD", f"{first['field']}: {first['message']}",
                       first["field"], details) from None


def build(ctx: Context) -> Stage:
    settings = ctx.settings if isinstance(ctx.settings, IngestSettings) else IngestSettings()
    outbox = Outbox(NAME, metadata)
    router = APIRouter(tags=["ingest"])

    @router.post("/lists", status_code=202)
    async def submit(request: Request, x_correlation_id: str | None = Header(None),
                     x_drgdip_hospital: str | None = Header(None)) -> dict:
        raw = await request.body()
        sl = parse_list(raw)
        if x_drgdip_hospital is not None and sl.hospital_code != x_drgdip_hospital:
            raise ApiError(403, "HOSPITAL_MISMATCH",
                           f"the list is for hospital {sl.hospital_code}; the caller is {x_drgdip_hospital}",
                           "hospital_code")
        correlation_id = x_correlation_id or str(uuid.uuid4())
        case_id = core.case_id_for(sl.hospital_code, sl.setl_id)
        digest = hashlib.sha256(raw).hexdigest()
        async with ctx.engine.begin() as conn:
            last = (await conn.execute(
                select(lists.c.list_version, lists.c.raw_sha256)
                .where(lists.c.hospital_code == sl.hospital_code, lists.c.setl_id == sl.setl_id)
                .order_by(lists.c.list_version.desc()).limit(1)
            )).first()
            if last is not None and last.raw_sha256 == digest:
                # the same bytes again (a client retry): not a new version
                return {"case_id": case_id, "list_version": last.list_version, "duplicate": True}
            version = (last.list_version + 1) if last else 1
            await conn.execute(lists.insert().values(
                case_id=case_id, hospital_code=sl.hospital_code, setl_id=sl.setl_id,
                list_version=version, format="native", raw=raw, raw_sha256=digest,
                correlation_id=correlation_id, received_at=datetime.now(UTC),
            ))
            payload = core.case_received(
                sl, list_version=version, psn_key=core.person_key(sl.psn_no, settings.psn_key_secret))
            await outbox.add(conn, [Envelope.new(payload, case_id=case_id,
                                                 correlation_id=correlation_id, producer=NAME)])
        outbox.wakeup.set()
        return {"case_id": case_id, "list_version": version, "duplicate": False}

    @router.get("/lists/count")
    async def count() -> dict:
        async with ctx.engine.connect() as conn:
            return {"lists": await conn.scalar(select(func.count()).select_from(lists))}

    return Stage(NAME, metadata, outbox, router=router)
