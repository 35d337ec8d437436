"""The gateway's pure access rules: masking personal data, throttling refused authentications,
token ids for logs, token expiry and the audit's CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from services.gateway.domain import audit
from services.gateway.domain.auth import TokenRequestError, expiry, issue_token, token_id_of
from services.gateway.domain.masking import mask_contact, mask_document, mask_id, mask_name
from services.gateway.domain.throttle import FailureThrottle
from shared.csvexport import to_csv


@pytest.mark.parametrize(("name", "masked"), [
    ("张三", "张*"), ("李小明", "李**"), ("欧阳娜娜", "欧***"), ("王", "*"), (" 张三 ", "张*"),
    ("", ""), (None, None), ("Li Lei", "L*****"),
])
def test_names_keep_only_the_family_name(name: str | None, masked: str | None) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize(("number", "masked"), [
    ("350521199001011234", "3505**********1234"),  # 18 digits
    ("35052119900101X", "3505*******101X"),  # 15 characters
    ("11010119900101123X", "1101**********123X"),
    ("P000123", "*****23"), ("12345", "*****"), ("", ""), (None, None),
])
def test_id_numbers_keep_region_and_last_digits(number: str | None, masked: str | None) -> None:
    assert mask_id(number) == masked


def test_contacts_keep_only_their_start() -> None:
    assert mask_contact("13912345678") == "139********"
    assert mask_contact("12") == "**"
    assert mask_contact(None) is None


def test_a_document_is_masked_at_any_depth_and_left_whole_otherwise() -> None:
    doc = {"infno": "4101", "input": {"setlinfo": {
        "psn_name": "测试患者", "certno": "110101199001011234", "psn_no": "P752162086440549",
        "setl_id": "S1", "age": 34, "coner_tel": None, "psn_name_extra": "kept"}},
        "data": {"stastinfo": [{"psn_no": "P000123", "setl_id": "S1"}]}}
    masked = mask_document(doc)
    s = masked["input"]["setlinfo"]
    assert (s["psn_name"], s["certno"], s["psn_no"]) == ("测***", "1101**********1234", "P752********0549")
    assert (s["setl_id"], s["age"], s["coner_tel"], s["psn_name_extra"]) == ("S1", 34, None, "kept")
    assert masked["data"]["stastinfo"][0]["psn_no"] == "*****23"
    assert doc["input"]["setlinfo"]["psn_name"] == "测试患者"  # the original is untouched
    assert mask_document([1, "x", None]) == [1, "x", None]


def test_a_client_is_throttled_after_max_failures_within_the_window() -> None:
    t = FailureThrottle(max_failures=3, window_seconds=60)
    for now in (0.0, 10.0, 20.0):
        assert t.retry_after("a", now) is None
        t.failed("a", now)
    assert t.retry_after("a", 20.5) == 40  # until the first failure leaves the window
    assert t.retry_after("b", 20.5) is None  # per client
    assert t.retry_after("a", 60.0) is None  # one more try once the oldest failure is out
    t.failed("a", 60.0)
    assert t.retry_after("a", 60.0) == 10


def test_the_throttle_forgets_clients_whose_failures_left_the_window() -> None:
    t = FailureThrottle(max_failures=2, window_seconds=10, max_clients=2)
    t.failed("a", 0.0)
    t.failed("b", 0.0)
    t.failed("c", 100.0)  # full: the stale clients go
    assert set(t._failures) == {"c"}


def test_logs_get_the_token_id_never_the_secret() -> None:
    t = issue_token("bureau-analyst")
    assert token_id_of(t.token) == t.token_id
    assert token_id_of("drgdip_nothex______x_secret") is None
    assert token_id_of("some-guess") is None and token_id_of("") is None


def test_expiry_is_days_after_creation_and_zero_never() -> None:
    made = datetime(2024, 1, 1, tzinfo=UTC)
    assert expiry(made, 30) == made + timedelta(days=30)
    assert expiry(made, 0) is None and expiry(made, None) is None
    with pytest.raises(TokenRequestError):
        expiry(made, -1)


def test_the_audit_exports_as_csv_and_no_cell_is_a_formula() -> None:
    at = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    text = to_csv(audit.CSV_COLUMNS, [{"id": 1, "at": at, "action": audit.TOKEN_CREATED, "actor": "cli:ops",
                          "subject": "abc", "detail": "=HYPERLINK(1)"}])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(audit.CSV_COLUMNS)
    assert rows[1][:4] == ["1", at.isoformat(), "token.created", "cli:ops"]
    assert rows[1][-1] == "'=HYPERLINK(1)" and rows[1][5] == ""
