"""The flat CSV layout for bulk imports of history: one settlement list per row.

Columns (header row required; empty cells are absent values; unknown columns are kept):

| column | meaning |
|---|---|
| hospital_code, setl_id, psn_no | fixmedins_code, settlement id, person number (required) |
| region | insured area code (insuplc) |
| sex | gend: 1 male, 2 female |
| age, age_days, birth_weight | years; days (under one year); grams |
| dept, los, leaving_type | discharge department, length of stay (days), dscg_way 1–9 |
| admission_date, discharge_date | YYYY-MM-DD or YYYY-MM-DD HH:MM:SS |
| diagnoses, procedures | codes separated by `|`, principal / main first |
| total_cost, patient_share | yuan, decimal |
| insurance_type | hi_type: 310 employee, 390 resident |
| planned_readmission | true / false |
| fee_01 … fee_14 | amount per fee category (med_chrgitm) |
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any


def rows(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, list as the native flat form) per data row."""
    reader = csv.DictReader(io.StringIO(text))
    for row in reader:
        doc: dict[str, Any] = {}
        fees: dict[str, str] = {}
        for key, value in row.items():
            if key is None or value is None or value == "":
                continue
            if key.startswith("fee_"):
                fees[key.removeprefix("fee_")] = value
            elif key in ("diagnoses", "procedures"):
                doc[key] = value.split("|")
            elif key == "planned_readmission":
                doc[key] = value.strip().lower() in ("true", "1", "yes")
            else:
                doc[key] = value
        if fees:
            doc["fees"] = fees
        doc.setdefault("diagnoses", [])
        yield reader.line_num, doc
