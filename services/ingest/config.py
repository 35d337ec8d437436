"""Ingest's settings (environment variables `DRGDIP_*`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import DirectoryPath, Field

from services.ingest.domain.limits import Limits
from shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    private_settings: ClassVar[tuple[str, ...]] = ("service_token", "psn_key_secret")

    dictionary_scheme: DirectoryPath | None = Field(
        None, description="scheme folder whose diagnoses.tsv/procedures.tsv the code checks use")
    psn_key_secret: str = Field(
        "drgdip-dev-secret",
        min_length=8,
        description="key for hashing person numbers (the pseudonym); a private value outside "
                    "development, else the service refuses to start",
    )
    # Bounds of what a sender may send (a list breaking one is rejected, naming the field).
    max_list_bytes: int = Field(1 << 20, ge=4096, le=64 << 20,
                                description="bytes of one list or national message (413 beyond)")
    max_line_bytes: int = Field(1 << 20, ge=4096, le=64 << 20,
                                description="bytes of one line (one list) of a bulk import")
    max_text_chars: int = Field(500, ge=16, le=100_000,
                                description="characters of any text value (names, free text)")
    max_id_chars: int = Field(64, ge=8, le=64,
                              description="characters of an identifier or code (setl_id, diag_code, …)")
    max_diagnoses: int = Field(100, ge=1, le=10_000, description="diagnoses of one list")
    max_procedures: int = Field(100, ge=1, le=10_000, description="procedures of one list")
    max_entries: int = Field(200, ge=1, le=10_000,
                             description="entries of any other repeated node (fee lines, payments, …)")
    earliest_year: int = Field(2000, ge=1900, le=2100,
                               description="dates of a stay (admission, discharge, settlement) before "
                                           "this year are rejected")
    future_tolerance_days: int = Field(1, ge=0, le=366,
                                       description="how far past today a date of a list may lie")
    timeliness_deadline_days: int = Field(30, ge=0, le=366,
                                          description="时效性: days after discharge a list counts as "
                                                      "uploaded in time")

    # Work left undone (a crash, a database outage) is finished by a periodic sweep.
    sweep_interval_s: int = Field(30, ge=1, le=86_400,
                                  description="how often stored but undecided lists and import jobs "
                                              "left open are looked for and finished")
    import_idle_s: int = Field(600, ge=1, le=7 * 86_400,
                               description="an import job left open with no list received for this "
                                           "long (its client gone) is closed by the sweep as interrupted")
    db_wait_s: int = Field(60, ge=0, le=3600,
                           description="how long a request waits for a database that stopped "
                                       "answering before it is answered 503 DATABASE_UNAVAILABLE")

    def limits(self) -> Limits:
        return Limits(list_bytes=self.max_list_bytes, line_bytes=self.max_line_bytes,
                      text_chars=self.max_text_chars, id_chars=self.max_id_chars,
                      diagnoses=self.max_diagnoses, procedures=self.max_procedures,
                      entries=self.max_entries, earliest_year=self.earliest_year,
                      future_days=self.future_tolerance_days)
