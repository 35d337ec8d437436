"""Review's composition: its tables, outbox, routes and the events it consumes."""

from __future__ import annotations

from services.review import handlers, repository
from services.review.endpoints import router
from shared.events import CASE_PRICED
from shared.messaging import Outbox
from shared.runtime import Context, Stage


def build(ctx: Context) -> Stage:
    return Stage(repository.NAME, repository.metadata, Outbox(repository.NAME, repository.metadata),
                 router=router, subscriptions=[((CASE_PRICED,), handlers.on_case_priced)])
