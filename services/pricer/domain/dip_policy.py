"""DIP policy documents (§7): a policy with the catalogue it prices with, read for storage; and
the policy a settlement run clears under, DRG or DIP (§8).

DIP pricing itself lives in `services.pricer.dip` for now (it moves into this package).
"""

from __future__ import annotations

import orjson
from pydantic import ValidationError

from services.pricer.dip import DipPolicy, settlement_policy
from services.pricer.domain.policy import CatalogueError, Policy, PolicyError
from services.pricer.domain.settlement import SettlementError
from shared.dip import Catalogue


def parse_dip_policy(policy_bytes: bytes, catalogue_bytes: bytes) -> tuple[DipPolicy, Catalogue]:
    """The DIP policy and its catalogue; `PolicyError` names the field at fault."""
    try:
        policy = DipPolicy.model_validate_json(policy_bytes)
    except ValidationError as e:
        raise PolicyError([(".".join(str(x) for x in err["loc"]) or "policy", err["msg"])
                           for err in e.errors()]) from None
    try:
        catalogue = Catalogue.from_document(orjson.loads(catalogue_bytes))
    except ValueError as e:  # pydantic's and orjson's errors included
        raise PolicyError([("catalogue", str(e).splitlines()[0])]) from None
    except TypeError as e:
        raise CatalogueError([("catalogue", str(e)[:490])]) from None
    return policy, catalogue


def policy_for_settlement(policy_id: str, stored: Policy | tuple[DipPolicy, Catalogue] | None) -> Policy:
    """The policy a settlement run clears under: the latest stored version of a DRG policy, or
    of a DIP policy, which settles through the same engine, its scores standing in for weights."""
    if stored is None:
        raise SettlementError("policy_id", f"no policy {policy_id!r} is stored")
    return stored if isinstance(stored, Policy) else settlement_policy(*stored)
