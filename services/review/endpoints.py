"""Review's HTTP routes. Reviews reach hospitals and the bureau through the gateway's read
model (`case-flagged`), so review serves no routes of its own yet."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["review"])
