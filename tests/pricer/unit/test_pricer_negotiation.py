"""The negotiation's pure domain (docs/domain.md §14): items, the window, counter-proposals, the
changes on adoption and their diff, the report's escaping."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.pricer.domain import negotiation as ng
from services.pricer.domain.negotiation_report import report_html, report_rows
from services.pricer.domain.policy import parse_policy
from shared.errors import Conflict, Invalid, NotFound
from shared.periods import cst_day

DOC = parse_policy({
    "format": "drgdip.pricing-policy/1", "policy_id": "p", "version": 2, "region": "350500",
    "valid_from": "2024-01-01", "method": "rate", "scheme_id": "chs-drg-1.1",
    "weights": {"version": "w2", "table": {"AB11": "1.2000", "BC13": "0.8000"}},
    "rates": {"310": {"3": "12000.00"}, "default": {"default": "10000.00"}},
    "hospitals": {"level_coefficients": {"3": "1.0", "2": "0.85", "1": "0.7"}, "coefficients": {"H1": "1.05"}},
}).to_document()
ITEMS = ng.policy_items(DOC)


def test_a_policy_draft_has_one_item_per_weight_rate_and_coefficient() -> None:
    assert ITEMS["weight:AB11"] == "1.2000" and ITEMS["rate:employee:3"] == "12000.00"
    assert ITEMS["rate:default:default"] == "10000.00" and ITEMS["coefficient:level:2"] == "0.85"
    assert ITEMS["coefficient:hospital:H1"] == "1.05"


def test_an_item_the_draft_does_not_have_is_refused() -> None:
    with pytest.raises(Invalid) as e:
        ng.check_item(ITEMS, "weight:ZZ99")
    assert (e.value.code, e.value.field) == ("UNKNOWN_ITEM", "item")


@pytest.mark.parametrize("counter", ["high", "-1", "NaN", "Infinity"])
def test_a_counter_proposal_on_a_numeric_item_is_a_non_negative_decimal(counter: str) -> None:
    with pytest.raises(Invalid) as e:
        ng.parse_counter(ITEMS, "weight:AB11", counter)
    assert e.value.code == "INVALID_COUNTER_PROPOSAL"


def test_counter_proposals_are_kept_as_decimals_or_text_for_an_opaque_item() -> None:
    assert ng.parse_counter(ITEMS, "weight:AB11", " 1.35 ") == "1.35"
    assert ng.parse_counter(ITEMS, "weight:AB11", None) is None
    items = ng.changeset_items(CHANGESET)
    assert items == {"document": None, "change:0": None, "change:1": None}
    assert ng.parse_counter(items, "change:0", "keep the national group") == "keep the national group"


def test_the_window_takes_comments_from_its_first_to_its_last_day_cst() -> None:
    w = ng.Window(date(2024, 3, 1), date(2024, 3, 15))
    for day in (date(2024, 3, 1), date(2024, 3, 15)):
        w.check_open(day)
    with pytest.raises(Conflict) as e:
        w.check_open(date(2024, 3, 16))
    assert e.value.code == "NEGOTIATION_WINDOW_CLOSED"
    with pytest.raises(Conflict) as e:
        w.check_open(date(2024, 2, 29))
    assert e.value.code == "NEGOTIATION_NOT_OPEN_YET"
    # 16:30 UTC on the 15th is already the 16th in China
    assert cst_day(datetime(2024, 3, 15, 16, 30, tzinfo=UTC)) == date(2024, 3, 16)
    with pytest.raises(Invalid) as e:
        ng.Window(date(2024, 3, 2), date(2024, 3, 1))
    assert e.value.code == "INVALID_WINDOW"


def test_a_comment_is_answered_once_and_an_adopted_draft_takes_nothing_more() -> None:
    ng.check_answerable(False)
    with pytest.raises(Conflict):
        ng.check_answerable(True)
    with pytest.raises(Conflict) as e:
        ng.check_not_adopted(ng.ADOPTED)
    assert e.value.code == "NEGOTIATION_ADOPTED"


def test_changes_name_known_items_once_with_a_value_a_reason_and_comments_of_the_draft() -> None:
    ok = ng.ChangeRequest("weight:AB11", "1.3000", "partly accepted", (7,))
    ng.check_changes("policy", ITEMS, [ok], {7: "weight:AB11"})
    cases = [([ok, ok], "DUPLICATE_CHANGE"), ([ng.ChangeRequest("weight:AB11", "-1", "x")], "INVALID_VALUE"),
             ([ng.ChangeRequest("weight:AB11", "1.3", " ")], "REASON_REQUIRED"),
             ([ng.ChangeRequest("weight:ZZ", "1.3", "x")], "UNKNOWN_ITEM")]
    for changes, code in cases:
        with pytest.raises(Invalid) as e:
            ng.check_changes("policy", ITEMS, changes, {7: "weight:AB11"})
        assert e.value.code == code
    with pytest.raises(NotFound):
        ng.check_changes("policy", ITEMS, [ok], {})
    with pytest.raises(Invalid) as e:
        ng.check_changes("dip-policy", {"score:A": "100"}, [ng.ChangeRequest("score:A", "90", "x")], {})
    assert e.value.code == "CHANGES_NOT_SUPPORTED"


CHANGESET = {"id": "city-1", "name": "本地", "base": "chs-drg-1.1", "region": "350500", "author": "局",
             "operations": [
                 {"op": "split_drg", "drg": "TB19", "by": "age", "into": [
                     {"code": "TB1C", "name": "<18", "max": 18}, {"code": "TB1F", "name": "其余"}]},
                 {"op": "rename", "group": "IZ29", "name": "本地名"}]}


def test_a_change_set_is_changed_operation_by_operation_withdrawn_or_amended() -> None:
    items = ng.changeset_items(CHANGESET)
    amended = CHANGESET["operations"][0] | {"into": [{"code": "TB1C", "name": "<14", "max": 14},
                                                     {"code": "TB1F", "name": "其余"}]}
    changes = [ng.ChangeRequest("change:1", ng.WITHDRAWN, "名称沿用国家版", (3,)),
               ng.ChangeRequest("change:0", amended, "年龄界限改为14岁", (2,))]
    ng.check_changes("scheme-changeset", items, changes, {2: "change:0", 3: "change:1"})
    adopted, diff = ng.changeset_adoption(CHANGESET, changes)
    assert adopted["operations"] == [amended] and adopted["id"] == "city-1"
    assert CHANGESET["operations"][0]["into"][0]["max"] == 18  # the draft is not touched
    assert [c.to_dict() for c in diff] == [
        {"item": "change:0", "draft_value": "split_drg TB19", "adopted_value": "amended: split_drg TB19",
         "reason": "年龄界限改为14岁", "comment_ids": [2]},
        {"item": "change:1", "draft_value": "rename IZ29", "adopted_value": "withdrawn",
         "reason": "名称沿用国家版", "comment_ids": [3]}]
    refused = [(ng.ChangeRequest("document", ng.WITHDRAWN, "x"), "CHANGES_NOT_SUPPORTED"),
               (ng.ChangeRequest("change:0", "1.2", "x"), "INVALID_VALUE"),
               (ng.ChangeRequest("change:0", {"drg": "TB19"}, "x"), "INVALID_VALUE"),
               (ng.ChangeRequest("change:2", ng.WITHDRAWN, "x"), "UNKNOWN_ITEM")]
    for change, code in refused:
        with pytest.raises(Invalid) as e:
            ng.check_changes("scheme-changeset", items, [change], {})
        assert e.value.code == code, change
    with pytest.raises(Invalid) as e:
        ng.check_changes("policy", ITEMS, [ng.ChangeRequest("weight:AB11", ng.WITHDRAWN, "x")], {})
    assert e.value.code == "INVALID_VALUE"
    with pytest.raises(Invalid) as e:
        ng.changeset_adoption(CHANGESET, [ng.ChangeRequest(f"change:{n}", ng.WITHDRAWN, "x") for n in (0, 1)])
    assert e.value.code == "NOTHING_ADOPTED"


def test_adoption_applies_the_changes_and_records_exactly_what_differs_from_the_draft() -> None:
    changes = [ng.ChangeRequest("weight:AB11", "1.3000", "cost study", (7,)),
               ng.ChangeRequest("coefficient:level:2", "0.9", "secondary hospitals", ()),
               ng.ChangeRequest("rate:employee:3", "12000", "same value, written differently", ())]
    adopted = ng.apply_changes(DOC, changes)
    assert DOC["weights"]["table"]["AB11"] == "1.2000"  # the draft is left as it was
    policy = parse_policy(adopted)
    assert policy.weights.table["AB11"] == parse_policy(DOC).weights.table["AB11"] + Decimal("0.1")
    diff = ng.adoption_diff(ITEMS, ng.policy_items(policy.to_document()), changes)
    assert [c.to_dict() for c in diff] == [
        {"item": "coefficient:level:2", "draft_value": "0.85", "adopted_value": "0.9",
         "reason": "secondary hospitals", "comment_ids": []},
        {"item": "weight:AB11", "draft_value": "1.2000", "adopted_value": "1.3000", "reason": "cost study",
         "comment_ids": [7]}]


def test_hospitals_read_every_comment_without_who_sent_it() -> None:
    every = [{"id": 1, "item": "weight:AB11", "hospital_code": "H1", "commented_by": "token:a", "reason": "r"}]
    assert ng.anonymised(every) == [{"id": 1, "item": "weight:AB11", "reason": "r"}]


def test_the_report_lists_comments_and_changes_and_escapes_every_value() -> None:
    comments = [{"id": 3, "item": "weight:AB11", "hospital_code": "H1", "kind": "objection",
                 "reason": "<b>低</b> & \"偏\"", "counter_proposal": "1.35", "answer": "partly", "answer_reason": "ok"}]
    changes = [{"item": "weight:AB11", "draft_value": "1.2000", "adopted_value": "1.3000", "reason": "r",
                "comment_ids": [3]},
               {"item": "weight:BC13", "draft_value": "0.8000", "adopted_value": "0.8500", "reason": "own",
                "comment_ids": []}]
    rows = report_rows(ITEMS, comments, changes)
    assert [(r["item"], r.get("comment_id"), r["adopted_value"]) for r in rows] == [
        ("weight:AB11", 3, "1.3000"), ("weight:BC13", None, "0.8500")]
    page = report_html({"id": 1, "title": "<i>t</i>", "kind": "policy"}, rows)
    assert "&lt;b&gt;低&lt;/b&gt; &amp; &quot;偏&quot;" in page and "<b>" not in page and "<i>" not in page
    assert "1 comments, 1 objections, 2 items changed" in page
