"""A DIP catalogue document registered with the grouper for a region and period (§5).

The document is the contract of `shared.dip`; here it is read from the bytes a bureau sends
(`POST /dip/catalogues`, `drgdip dip import-catalogue`) and its period checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import orjson

from shared.dip import Catalogue
from shared.errors import Invalid


class CatalogueError(Invalid):
    """Not JSON, not a catalogue document, or a period that ends before it starts (422,
    `INVALID_CATALOGUE`, field "body"); `reason`: what was wrong, without the field."""

    default_code = "INVALID_CATALOGUE"

    def __init__(self, reason: str) -> None:
        super().__init__(f"body: {reason}"[:500], field="body")
        self.reason = reason


@dataclass(frozen=True)
class CatalogueRegistration:
    """A catalogue to store: in force in `region` from `valid_from` to `valid_to` (inclusive;
    None: open-ended); `document` the text as received."""

    catalogue: Catalogue
    document: str
    region: str
    valid_from: date
    valid_to: date | None


def catalogue_registration(document: bytes, region: str, valid_from: date,
                           valid_to: date | None = None) -> CatalogueRegistration:
    """Read a catalogue document for registration; raises `CatalogueError`."""
    try:
        catalogue = Catalogue.from_document(orjson.loads(document))
        text = document.decode()
    except (ValueError, TypeError) as e:  # not JSON (or UTF-8), or not a catalogue document
        raise CatalogueError(str(e)) from e
    if valid_to is not None and valid_to < valid_from:
        raise CatalogueError(f"valid_to {valid_to} is before valid_from {valid_from}")
    return CatalogueRegistration(catalogue, text, region, valid_from, valid_to)
