"""Pricer's HTTP routes: policy versions (import, list) and settlement statements."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from services.pricer import handlers, repository
from services.pricer.domain.policy import PolicyError
from shared.web import Conn, stage_service

ACTOR_HEADER = "x-drgdip-actor"  # who changes a policy over HTTP (set by the gateway)

Policies = Annotated[repository.Policies, Depends(stage_service(repository.NAME))]

router = APIRouter(tags=["pricer"])


def _actor(request: Request) -> str:
    return request.headers.get(ACTOR_HEADER) or "api"


@router.post("/policies", status_code=201)
async def upload_policy(request: Request, response: Response, conn: Conn, policies: Policies) -> dict:
    """Import a policy version (bureau only: the gateway protects this route)."""
    policy, stored = await handlers.import_policy(conn, await request.body(), _actor(request),
                                                  book=policies.drg)
    if not stored:
        response.status_code = 200
    return {"policy_id": policy.policy_id, "version": policy.version, "region": policy.region,
            "weights_version": policy.weights.version, "weights": len(policy.weights.table),
            "stored": stored}


@router.post("/dip/policies", status_code=201)
async def upload_dip_policy(body: dict[str, Any], request: Request, conn: Conn) -> dict:
    """Import a DIP policy version with the catalogue it prices with: {"policy", "catalogue"}."""
    for key in ("policy", "catalogue"):
        if not isinstance(body.get(key), dict):
            raise PolicyError([(key, "required (a JSON object)")])
    # the standard library writes any JSON number back (orjson refuses integers past 64 bits:
    # such a document is then refused by the parsers with the field at fault)
    dip = await handlers.import_dip_policy(conn, json.dumps(body["policy"]).encode(),
                                           json.dumps(body["catalogue"]).encode(), _actor(request))
    return {"policy_id": dip.policy_id, "version": dip.version, "region": dip.region}


@router.get("/policies")
async def list_policies(conn: Conn) -> dict:
    return {"policies": await repository.list_policies(conn)}


@router.get("/statements")
async def list_statements(hospital: str, conn: Conn, period: str | None = None) -> dict:
    """Every stored settlement statement version of a hospital (optionally one period)."""
    return {"statements": await repository.list_statements(conn, hospital, period)}
