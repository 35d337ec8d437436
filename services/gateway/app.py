"""The gateway's composition: its tables, outbox, routes (the API and the web dashboard), the
upstream services it forwards to and the events it folds into its read model."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter

from services.gateway import dashboard, handlers, reporting, repository
from services.gateway.config import GatewaySettings
from services.gateway.endpoints import Gateway, router
from shared.events import PERIOD_SETTLED, TOPICS
from shared.messaging import Outbox
from shared.runtime import Context, Stage


def build(ctx: Context) -> Stage:
    settings = ctx.settings if isinstance(ctx.settings, GatewaySettings) else GatewaySettings()
    routes = APIRouter()
    routes.include_router(router)
    routes.include_router(reporting.router)  # reports and the performance evaluation
    routes.include_router(dashboard.router)  # the web dashboard on the same API
    return Stage(repository.NAME, repository.metadata, Outbox(repository.NAME, repository.metadata),
                 router=routes,
                 subscriptions=[(TOPICS, partial(handlers.on_stage_events, band=settings.indicator_near_threshold_band)),
                                ((PERIOD_SETTLED,), handlers.on_period_settled)],
                 service=Gateway.of(settings, ctx.http), public=True)
