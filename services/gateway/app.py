"""The gateway's composition: its tables, outbox, routes, the upstream services it forwards to
and the events it folds into its read model."""

from __future__ import annotations

from functools import partial

from services.gateway import handlers, repository
from services.gateway.config import GatewaySettings
from services.gateway.endpoints import Gateway, router
from shared.events import TOPICS
from shared.messaging import Outbox
from shared.runtime import Context, Stage


def build(ctx: Context) -> Stage:
    settings = ctx.settings if isinstance(ctx.settings, GatewaySettings) else GatewaySettings()
    return Stage(repository.NAME, repository.metadata, Outbox(repository.NAME, repository.metadata),
                 router=router, subscriptions=[(TOPICS, partial(handlers.on_stage_events,
                                                         band=settings.indicator_near_threshold_band))],
                 service=Gateway.of(settings, ctx.http), public=True)
