"""A DIP catalogue document registered with the grouper for a region and period (§5).

The document is the contract of `shared.dip`; here it is read from the bytes a bureau sends
(`POST /dip/catalogues`, `drgdip dip import-catalogue`) and its period checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from shared.dip import Catalogue, CatalogueError, load_catalogue


def _invalid(reason: str) -> CatalogueError:
    """What the bureau is told: "body: <reason>" (field "body")."""
    return CatalogueError(f"body: {reason}"[:500], field="body")


@dataclass(frozen=True)
class CatalogueRegistration:
    """A catalogue to store: in force in `region` from `valid_from` to `valid_to` (inclusive;
    None: open-ended); `document` the text as received."""

    catalogue: Catalogue
    document: str
    region: str
    valid_from: date
    valid_to: date | None

    def summary(self) -> dict[str, object]:
        """What a registration answers (the route and `drgdip dip import-catalogue`)."""
        return {"catalogue_id": self.catalogue.catalogue_id, "version": self.catalogue.version,
                "region": self.region, "groups": len(self.catalogue.groups),
                "valid_from": self.valid_from.isoformat(),
                "valid_to": self.valid_to.isoformat() if self.valid_to else None}


def catalogue_registration(document: bytes, region: str, valid_from: date,
                           valid_to: date | None = None) -> CatalogueRegistration:
    """Read a catalogue document for registration; raises `CatalogueError` (field "body")."""
    try:
        catalogue = load_catalogue(document, field="body")
        text = document.decode()
    except CatalogueError as e:
        raise _invalid(e.message) from None
    except ValueError as e:  # not UTF-8
        raise _invalid(str(e)) from None
    if valid_to is not None and valid_to < valid_from:
        raise _invalid(f"valid_to {valid_to} is before valid_from {valid_from}")
    return CatalogueRegistration(catalogue, text, region, valid_from, valid_to)
