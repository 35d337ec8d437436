"""Ingest's fast paths give exactly what the straightforward code gave.

- Canonical values ("1286.83", "A05", "44") are read by pydantic's core without calling the
  Python readers (`national._CanonicalFirst`): the models must still read every document into
  the same values, or reject it with the same errors (type, field path, message), as models
  whose fields all go through the Python readers (the reference, built here from the real ones).
- QC looks up which sex/age/principal rules cover a code once per code (`qc._covering`).
- The `case-received` payload is serialised once (`intake.Changes.add_version`).
- The person key reuses the keyed HMAC state (`intake.person_key`).

The database's fast paths are tested in `tests/ingest/integration/test_intake_store.py`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paths import SHARED
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    with_config,
)
from typing_extensions import TypedDict, is_typeddict

from services.ingest.domain import intake, qc
from services.ingest.domain import national as nat
from shared.events import CaseFacts, CaseReceived, Envelope

HSA = SHARED / "testdata" / "hsa"
SCHEME = SHARED / "schemes" / "chs-drg-1.1"
EXAMPLES = {name: json.loads((HSA / f"{name}.json").read_text(encoding="utf-8"))
            for name in ("4101-01", "4101-03", "4101-05", "4101A-02", "4101A-04", "4101A-06")}


# ----------------------------------------------------------------------------- the reference


def _reference_annotation(annotation: Any, made: dict[type, type[BaseModel]]) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _reference(annotation, made)
    if is_typeddict(annotation):
        return _reference_typeddict(annotation, made)
    if get_origin(annotation) is list:
        return list[_reference_annotation(get_args(annotation)[0], made)]  # type: ignore[misc]
    return annotation


def _reference(model: type[BaseModel], made: dict[type, type[BaseModel]]) -> type[BaseModel]:
    """`model` with every field read by its Python reader (BeforeValidator), as before."""
    if model not in made:
        fields: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            meta = [BeforeValidator(m.read) if isinstance(m, nat._CanonicalFirst) else m for m in info.metadata]
            annotation = _reference_annotation(info.annotation, made)
            typ = Annotated[(annotation, *meta)] if meta else annotation  # type: ignore[valid-type]
            if info.default_factory is not None:
                fields[name] = (typ, Field(default_factory=info.default_factory))  # type: ignore[arg-type]
            else:
                fields[name] = (typ, ... if info.is_required() else info.default)
        made[model] = create_model(f"Reference{model.__name__}", __config__=ConfigDict(extra="allow", frozen=True),
                                   __doc__=model.__doc__,
                                   **fields)
    return made[model]


def _reference_typeddict(typed: Any, made: dict[Any, Any]) -> Any:
    """A TypedDict node with every field read by its Python reader."""
    if typed not in made:
        fields = {}
        for name, hint in get_type_hints(typed, include_extras=True).items():
            args = get_args(hint)
            meta = [BeforeValidator(m.read) if isinstance(m, nat._CanonicalFirst) else m for m in args[1:]]
            fields[name] = Annotated[(args[0], *meta)] if meta else hint  # type: ignore[valid-type]
        reference = TypedDict(f"Reference{typed.__name__}", fields, total=typed.__total__)  # type: ignore[operator]
        reference.__doc__ = typed.__doc__
        made[typed] = with_config(ConfigDict(extra="allow"))(reference)
    return made[typed]


_MADE: dict[type, type[BaseModel]] = {}
MODELS: dict[type[BaseModel], type[BaseModel]] = {
    m: _reference(m, _MADE) for m in (nat.SettlementList, nat.ListMessage, nat.StatusMessage)}


def _plain(value: Any) -> Any:
    """A comparable picture of a read value: types and Decimal exponents included."""
    if isinstance(value, BaseModel):
        return ("model", {k: _plain(v) for k, v in value.__dict__.items()}, _plain(value.model_extra),
                sorted(value.model_fields_set))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return (type(value).__name__, repr(value))


def _read(model: type[BaseModel], doc: object) -> Any:
    try:
        return _plain(model.model_validate(doc))
    except ValidationError as e:
        # (a message may name the model: the reference's name is ours with a prefix)
        return [(x["type"], x["loc"], x["msg"].replace("Reference", "")) for x in e.errors(include_url=False)]


def assert_same_reading(model: type[BaseModel], doc: object) -> None:
    assert _read(model, doc) == _read(MODELS[model], doc)


# ----------------------------------------------------------------------------- values

PY_SPACE = [c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()]
ODD = ["", " ", "\u3000", "a", " a", "a ", " a ", "a b", "a\nb", "\na", "a\n", "\x1cA", "A\x1f", "\x85x",
       "x\u200b", "\u200bx", "0", "00", "44", "044", "+1", "-1", "1.0", "1.00", "1.", ".5", "1e3", "１２",
       "١٢", "٠.٠٠", "12.5", "12.50", "12.500", "12.505", "0.00", "-0.00", "000000000001.00",
       "999999999999.99", "1234567890123.00", "1_000.00", "NaN", "inf", "9" * 12, "9" * 13,
       "x" * 65, "中文", "😀", "\ud800", "A05", "N73.501"]
ODD += [f"{c}x" for c in PY_SPACE] + [f"x{c}" for c in PY_SPACE] + PY_SPACE
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.decimals(allow_nan=False)
           | st.text(max_size=16) | st.sampled_from(ODD)
           | st.from_regex(r"[0-9]{1,13}(\.[0-9]{1,3})?", fullmatch=True))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)


class StrSubclass(str):
    pass


@pytest.mark.parametrize("field", ["gend", "age", "medfee_sumamt", "acct_pay"])
def test_canonical_fields_read_odd_values_as_the_python_readers(field: str) -> None:
    values: list[Any] = [*ODD, StrSubclass("A05"), StrSubclass(" a "), 5, 5.0, 5.5, -3, True, 10**30, 1e300,
              Decimal("1.234"), Decimal("12.50"), [], {}, None]
    for value in values:
        assert_same_reading(nat.SettlementList, {"setlinfo": {"setl_id": "S", "psn_no": "P",
                                                              "fixmedins_code": "H", field: value},
                                                 "diseinfo": [{"diag_code": "A00.000"}]})


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["gend", "age", "nwb_age", "medfee_sumamt", "psn_selfpay", "insuplc",
                                        "adm_time", "setl_id", "extension"]), scalars, max_size=5),
       st.lists(st.dictionaries(st.sampled_from(["med_chrgitm", "amt", "oth_amt", "x"]), scalars, max_size=4),
                max_size=3))
def test_fields_read_any_value_as_the_python_readers(setl: dict[str, Any], items: list[Any]) -> None:
    doc = {"setlinfo": {"setl_id": "S", "psn_no": "P", "fixmedins_code": "H"} | setl,
           "diseinfo": [{"diag_code": "A00.000"}], "iteminfo": items}
    assert_same_reading(nat.SettlementList, doc)


def test_the_blank_class_is_exactly_what_strip_removes() -> None:
    assert all(ord(c) < 0x3001 for c in PY_SPACE)  # national._SPACE looks no further
    for c in map(chr, range(0x3001)):
        assert (c + "a" + c).strip() == ("a" if c.isspace() else c + "a" + c)


# ----------------------------------------------------------------------------- whole documents


def _generated(n: int) -> Iterator[dict[str, Any]]:
    from drgdip.generate import generate_region

    return generate_region(SCHEME, hospitals=5, cases=n, seed=3)


def test_generated_and_example_lists_read_the_same() -> None:
    docs = [*_generated(300), *(m["input"] for m in EXAMPLES.values())]
    for doc in docs:
        assert_same_reading(nat.SettlementList, doc)
        # the fast path actually ran: nothing to fall back on in these lists
        assert isinstance(nat.parse_settlement_list(doc), nat.SettlementList)
    for msg in EXAMPLES.values():
        assert_same_reading(nat.ListMessage, msg)
    assert_same_reading(nat.StatusMessage, json.loads((HSA / "4102-01.json").read_text(encoding="utf-8")))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(EXAMPLES)),
       st.lists(st.tuples(st.sampled_from(["setlinfo", "diseinfo", "iteminfo", "oprninfo", "payinfo", "input",
                                           "header"]),
                          st.text(max_size=12) | st.sampled_from(["gend", "age", "nwb_age", "medfee_sumamt",
                                                                  "amt", "diag_code", "infno", "fixmedins_code"]),
                          json_values), min_size=1, max_size=6))
def test_mutated_messages_read_the_same(name: str, mutations: list[tuple[str, str, Any]]) -> None:
    msg = copy.deepcopy(EXAMPLES[name])
    for node, key, value in mutations:
        if node == "header":
            msg[key] = value
        elif node == "input":
            msg["input"][key] = value
        elif node == "setlinfo":
            msg["input"]["setlinfo"][key] = value
        elif isinstance(msg["input"].get(node), list) and msg["input"][node] and isinstance(msg["input"][node][0], dict):
            msg["input"][node][0][key] = value
    assert_same_reading(nat.ListMessage, msg)
    assert_same_reading(nat.SettlementList, msg["input"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_reads_the_same(doc: object) -> None:
    for model in MODELS:
        assert_same_reading(model, doc)


def test_json_schema_is_that_of_the_annotated_types() -> None:
    for model, reference in MODELS.items():
        theirs = json.loads(json.dumps(reference.model_json_schema()).replace("Reference", ""))
        assert model.model_json_schema() == theirs


# ----------------------------------------------------------------------------- fee items


class FormerItemInfo(nat._Node):
    """`iteminfo[]` as a model, as it was read before it became a dict."""

    med_chrgitm: nat.OptStr = None
    amt: nat.Money = None
    claa_sumfee: nat.Money = None
    clab_amt: nat.Money = None
    fulamt_ownpay_amt: nat.Money = None
    oth_amt: nat.Money = None


class FormerSettlementList(nat.SettlementList):
    iteminfo: nat.Array[FormerItemInfo] = Field(default_factory=list)  # type: ignore[assignment]


# the parts of a fee line: read as `Money` was, kept as the text of that amount (`nat.MoneyText`)
AS_TEXT = ("claa_sumfee", "clab_amt", "fulamt_ownpay_amt", "oth_amt")


def _problems_or_fees(model: type[nat.SettlementList], doc: Any) -> Any:
    try:
        sl = model.model_validate(doc)
    except ValidationError as e:
        return [(p.field, p.code, p.message_en) for p in nat._problems(e, "input")]

    def value(item: Any, name: str) -> Any:
        v = item.get(name) if isinstance(item, dict) else getattr(item, name)
        return str(v) if name in AS_TEXT and isinstance(v, Decimal) else v

    return [{name: _plain(value(item, name))
             for name in FormerItemInfo.model_fields} | {"extra": _plain(
                 {k: v for k, v in item.items() if k not in FormerItemInfo.model_fields}
                 if isinstance(item, dict) else item.model_extra)} for item in sl.iteminfo]


fee_names = st.sampled_from([*FormerItemInfo.model_fields, "x"])
fee_items = st.lists(st.dictionaries(fee_names, scalars, max_size=6) | json_values, max_size=4) | json_values


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(fee_items)
def test_fee_items_read_as_the_former_model(items: Any) -> None:
    """The same amounts, extras and problems (field path, code) as when each was a model."""
    doc = copy.deepcopy(EXAMPLES["4101-01"]["input"]) | {"iteminfo": items}
    assert _problems_or_fees(nat.SettlementList, doc) == _problems_or_fees(FormerSettlementList, doc)


def test_example_fee_items_read_as_the_former_model() -> None:
    for doc in [*_generated(50), *(m["input"] for m in EXAMPLES.values())]:
        assert _problems_or_fees(nat.SettlementList, doc) == _problems_or_fees(FormerSettlementList, doc)


# ----------------------------------------------------------------------------- QC, events, keys


codes = st.text(max_size=8) | st.from_regex(r"[A-Za-z][0-9]{2}(\.[0-9x]{1,4})?", fullmatch=True) | st.sampled_from(
    ["O00", "O99.9", "D07.3", "D07.4", "d07.6", "D07.7", "N40", "N51.x", "N52", "P00", "P96.9", "V01", "Y98",
     "Y99", "R00", "r99", "Z32", "Z39.0", "", "C51", "C58.x00"])


@settings(max_examples=500)
@given(codes)
def test_rules_covering_a_code_are_those_whose_range_holds_it(code: str) -> None:
    tables: tuple[Sequence[Any], ...] = (qc.SEX_RULES, qc.AGE_RULES, qc.PRINCIPAL_RULES)
    for table in tables:
        expected = [r for r in table if code in r.codes]
        assert list(qc._covering(table, code)) == expected
        assert list(qc._covering(table, code)) == expected  # and again, remembered
        assert list(qc._covering(list(table), code)) == expected  # another table object: not indexed


def _principal_allowed_as_before(sl: nat.SettlementList, ctx: qc.QcContext) -> Iterator[qc.Problem]:
    ordered = nat.principal_first(sl)
    if not ordered:
        return
    principal = ordered[0]
    index = next(i for i, d in enumerate(sl.diseinfo) if d is principal)
    for rule in ctx.principal_rules:
        if principal.diag_code in rule.codes:
            yield qc._p(rule.code, qc._dx(index), f"{principal.diag_code}（{rule.label_zh}）", principal.diag_code)
            break


@settings(max_examples=300)
@given(st.lists(st.fixed_dictionaries({"diag_code": codes.filter(lambda c: c.strip() != ""),
                                       "diag_type": st.sampled_from(["1", "2", "3", ""]),
                                       "maindiag_flag": st.sampled_from(["1", "0", ""])}), min_size=1, max_size=5))
def test_principal_check_finds_the_principal_as_before(diagnoses: list[dict[str, str]]) -> None:
    doc = copy.deepcopy(EXAMPLES["4101-01"]["input"]) | {"diseinfo": diagnoses}
    try:
        sl = nat.parse_settlement_list(doc)
    except nat.ListRejected:
        return
    ctx = qc.QcContext(qc.Dictionaries(frozenset(), frozenset()), "4101", qc.REQUIRED_FIELDS, qc.SEX_RULES,
                       qc.AGE_RULES, qc.PRINCIPAL_RULES)
    assert list(qc.principal_allowed(sl, ctx)) == list(_principal_allowed_as_before(sl, ctx))


texts = st.text(max_size=10)
amounts = st.decimals(min_value=0, max_value=Decimal("999999999999.99"), places=2)
payloads = st.builds(
    CaseReceived,
    facts=st.builds(CaseFacts, hospital_code=texts, setl_id=texts, list_version=st.integers(1, 9), region=texts,
                    psn_key=texts, admission_date=st.none() | st.dates(), discharge_date=st.none() | st.dates(),
                    insurance_type=st.none() | texts, total_cost=st.none() | amounts,
                    fees=st.dictionaries(texts, amounts, max_size=3), patient_share=st.none() | amounts,
                    treatment_region=st.none() | texts, planned_readmission=st.booleans(),
                    withdrawn=st.booleans()),
    sex=st.none() | st.integers(0, 99), age=st.none() | st.integers(0, 150), age_days=st.none() | st.integers(0, 366),
    birth_weight=st.none() | st.integers(0, 20000), dept=st.none() | texts, los=st.none() | st.integers(0, 36500),
    leaving_type=st.none() | st.integers(0, 99), diagnoses=st.lists(texts, max_size=3),
    procedures=st.lists(texts, max_size=3))


@settings(max_examples=300)
@given(payloads)
def test_event_column_is_the_payload_json(payload: CaseReceived) -> None:
    envelope = Envelope.new(payload, case_id="c", correlation_id="r", producer="ingest")
    assert orjson.dumps(envelope.payload).decode() == payload.model_dump_json()


def test_person_key_is_the_keyed_hash() -> None:
    for secret in ("", "secret", "密钥" * 40):
        for psn in ("", "P0001", "患者"):
            expected = hmac.new(secret.encode(), psn.encode(), hashlib.sha256).hexdigest()[:32]
            assert intake.person_key(psn, secret) == expected


def test_correlation_ids_are_random_uuids_as_uuid4_writes_them() -> None:
    import uuid

    made = {intake.new_correlation_id() for _ in range(2000)}
    assert len(made) == 2000
    for text in made:
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 4 and u.variant == uuid.RFC_4122
    assert intake.Received("native", b"{}").correlation_id != intake.Received("native", b"{}").correlation_id


# ----------------------------------------------------------------------------- QC's one pass

DICTIONARIES = qc.load_dictionaries(SCHEME)
WINDOW = qc.DateWindow(date(2029, 12, 31))  # the examples are clean in it


def _qc_both_ways(doc: Any, kind: Any = "4101") -> None:
    """`check` (its one pass for a clean list) finds what running every rule finds."""
    try:
        sl = nat.parse_settlement_list(doc)
    except nat.ListRejected:
        return
    for dictionaries, rules in ((DICTIONARIES, qc.ALL_RULES), (qc.Dictionaries(frozenset(), frozenset()),
                                                               intake._WITHOUT_DICTIONARIES)):
        for required in (qc.REQUIRED_FIELDS, intake.FLAT_REQUIRED | {"4101": ("setl_id", "x_region")}):
            if kind not in required:
                continue
            ctx = qc.QcContext(dictionaries, kind, required, qc.SEX_RULES, qc.AGE_RULES, qc.PRINCIPAL_RULES,
                               WINDOW, qc.western_diagnoses(sl))
            assert qc.check(sl, dictionaries, kind=kind, required=required, rules=rules, window=WINDOW) == [
                p for rule in rules for p in rule(sl, ctx)]


def test_qc_one_pass_agrees_with_the_rules_on_generated_and_example_lists() -> None:
    docs = [*_generated(300), *(m["input"] for m in EXAMPLES.values())]
    # a fee line without its amount that the total does not miss (QC-REQ-003 alone, in a 4101)
    unpaid = copy.deepcopy(docs[0])
    line = unpaid["iteminfo"][3]
    unpaid["setlinfo"]["medfee_sumamt"] = str(Decimal(unpaid["setlinfo"]["medfee_sumamt"]) - Decimal(line.pop("amt")))
    for doc in [*docs, unpaid]:
        for kind in ("4101", "4101A"):
            _qc_both_ways(doc, kind)


qc_values = st.sampled_from(["", "1", "2", "9", "01", "14", "15", "0.00", "-0.00", "12.34", "99999.99", "O00.000",
                             "N40.x00", "P00.000", "R00.000", "V01.000", "A00.000", "2024-01-01",
                             "2024-01-01 08:00:00", "2030-01-01", "1990-01-01"]) | scalars
QC_KEYS = {
    "setlinfo": ["gend", "age", "nwb_age", "nwb_bir_wt", "nwb_adm_wt", "medfee_sumamt", "dscg_way", "adm_time",
                 "dscg_time", "act_ipt_days", "brdy", "hi_paymtd", "setl_begn_date", "dcla_time", "x_region"],
    "diseinfo": ["diag_code", "maindiag_flag", "diag_type"],
    "iteminfo": ["med_chrgitm", "amt"],
    "oprninfo": ["oprn_oprt_code", "oprn_oprt_type"],
    "drop": ["hi_paymtd", "medfee_sumamt", "amt", "med_chrgitm", "x_region"],
}
FEE_CODES = st.sampled_from([*qc.FEE_CATEGORIES, "15", ""])
qc_mutations = st.one_of(*[st.tuples(st.just(node), st.sampled_from(keys),
                                     FEE_CODES | qc_values if node == "iteminfo" else qc_values, st.integers(0, 20))
                           for node, keys in QC_KEYS.items()])


@functools.cache
def _clean_generated() -> list[dict[str, Any]]:
    return list(_generated(10))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["4101-01", "4101-03", "4101A-02", "4101A-04", *range(10)]), st.sampled_from(["4101", "4101A"]),
       st.lists(qc_mutations, min_size=1, max_size=4))
def test_qc_one_pass_agrees_with_the_rules_on_mutated_lists(name: str | int, kind: Any,
                                                            mutations: list[tuple[str, str, Any, int]]) -> None:
    doc = copy.deepcopy(_clean_generated()[name] if isinstance(name, int) else EXAMPLES[name]["input"])
    for node, key, value, index in mutations:
        if node == "setlinfo":
            doc["setlinfo"][key] = value
        elif node == "drop":
            for entry in (doc["setlinfo"], *doc.get("iteminfo", [])):
                entry.pop(key, None)
        elif isinstance(doc.get(node), list) and doc[node]:
            doc[node][index % len(doc[node])][key] = value
    _qc_both_ways(doc, kind)


def test_a_forked_process_draws_its_own_correlation_ids() -> None:
    import os

    intake.new_correlation_id()  # the parent holds spare random numbers now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, to the parent
        os.write(write, intake.new_correlation_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 64).decode() != intake.new_correlation_id()


def _fees_line_by_line(items: Sequence[Any]) -> dict[str, Decimal]:
    fees: dict[str, Decimal] = {}
    for item in items:
        category, amt = item.get("med_chrgitm"), item.get("amt")
        if category is not None and amt is not None:
            prev = fees.get(category)
            fees[category] = amt if prev is None and not amt.is_signed() else (Decimal(0) if prev is None else prev) + amt
    return fees


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(["med_chrgitm", "amt", "x"]),
                                st.sampled_from(["01", "02", "", None, "1.00", "-0.00", "0.00", "-0", "12.5"]),
                                max_size=3), max_size=4))
def test_fees_sum_each_category_as_line_by_line(items: list[dict[str, Any]]) -> None:
    doc = copy.deepcopy(EXAMPLES["4101-01"]["input"]) | {"iteminfo": items}
    try:
        sl = nat.parse_settlement_list(doc)
    except nat.ListRejected:
        return
    assert _plain(nat._fees(sl.iteminfo)) == _plain(_fees_line_by_line(sl.iteminfo))


def test_generated_fees_as_line_by_line() -> None:
    for doc in _generated(50):
        sl = nat.parse_settlement_list(doc)
        assert _plain(nat._fees(sl.iteminfo)) == _plain(_fees_line_by_line(sl.iteminfo))
