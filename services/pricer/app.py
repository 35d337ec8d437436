"""Pricer's composition: its tables, outbox, routes, the events it consumes, and the policy file
it imports at start (`DRGDIP_POLICY_FILE`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.pricer import handlers, repository
from services.pricer.config import PricerSettings
from services.pricer.endpoints import router
from shared.errors import DomainError
from shared.events import CASE_GROUPED, DEDUCTION_CONFIRMED, SPECIAL_CASE_DECIDED, Envelope
from shared.messaging import Outbox
from shared.runtime import Context, Stage
from shared.settings import SettingError


def build(ctx: Context) -> Stage:
    settings = ctx.settings if isinstance(ctx.settings, PricerSettings) else PricerSettings()
    policies = repository.Policies()

    async def on_start() -> None:
        if settings.policy_file is not None:
            document = settings.policy_file.read_bytes()
            async with ctx.engine.begin() as conn:
                try:
                    await handlers.import_policy(conn, document, "settings", book=policies.drg)
                except DomainError as e:  # an invalid policy, or a conflict with a stored version
                    where = f" at {e.field}" if e.field else ""
                    raise SettingError("DRGDIP_POLICY_FILE", f"{e.code}{where}: {e.message}") from e

    async def on_events(conn: AsyncConnection, envs: Sequence[Envelope]) -> list[Envelope]:
        # one consumer (one group member) for the pricer's topics: grouped cases first, then the
        # special-case decisions, which price again whatever the batch priced before them, then
        # review's confirmed deductions (kept for the next settlement run, no event)
        grouped = [e for e in envs if e.event_type == CASE_GROUPED]
        decided = [e for e in envs if e.event_type == SPECIAL_CASE_DECIDED]
        deductions = [e for e in envs if e.event_type == DEDUCTION_CONFIRMED]
        out = await handlers.on_case_grouped(policies, conn, grouped) if grouped else []
        out += await handlers.on_special_case_decided(policies, conn, decided) if decided else []
        return out + (await handlers.on_deduction_confirmed(conn, deductions) if deductions else [])

    return Stage(repository.NAME, repository.metadata, Outbox(repository.NAME, repository.metadata),
                 router=router,
                 subscriptions=[((CASE_GROUPED, SPECIAL_CASE_DECIDED, DEDUCTION_CONFIRMED), on_events)],
                 on_start=on_start, service=policies)
