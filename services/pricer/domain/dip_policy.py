"""DIP policy documents (§7): a policy with the catalogue it prices with, read for storage; and
the policy a settlement run clears under, DRG or DIP (§8).
"""

from __future__ import annotations

from services.pricer.domain.dip_pricing import DipPolicy, parse_dip_policy, settlement_policy
from services.pricer.domain.policy import Policy
from services.pricer.domain.settlement import SettlementError
from shared.dip import Catalogue, load_catalogue


def read_dip_policy(policy_bytes: bytes, catalogue_bytes: bytes) -> tuple[DipPolicy, Catalogue]:
    """The DIP policy and the catalogue it prices with, as imported and stored: `PolicyError`
    or `CatalogueError` name the field at fault."""
    return parse_dip_policy(policy_bytes), load_catalogue(catalogue_bytes)


def policy_for_settlement(policy_id: str, stored: Policy | tuple[DipPolicy, Catalogue] | None) -> Policy:
    """The policy a settlement run clears under: the latest stored version of a DRG policy, or
    of a DIP policy, which settles through the same engine, its scores standing in for weights."""
    if stored is None:
        raise SettlementError("policy_id", f"no policy {policy_id!r} is stored")
    return stored if isinstance(stored, Policy) else settlement_policy(*stored)
