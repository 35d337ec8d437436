"""Every oracle case of the three schemes, in both code modes, must match exactly; and the
traced path must agree with the fast path on every case."""

from __future__ import annotations

import pytest
from grouper_testkit import SCHEME_IDS, oracle_cases, scheme_path

from services.grouper.domain import Scheme, load_scheme

MODES = (("raw", "expected"), ("mapped", "expected_mapped"))


@pytest.fixture(scope="module")
def schemes() -> dict[str, Scheme]:
    """Each scheme loaded once for the module."""
    return {sid: load_scheme(scheme_path(sid)) for sid in SCHEME_IDS}


@pytest.fixture(scope="module")
def cases() -> dict[str, list[dict]]:
    return {sid: oracle_cases(sid) for sid in SCHEME_IDS}


@pytest.mark.parametrize("scheme_id", SCHEME_IDS)
@pytest.mark.parametrize(("code_mode", "key"), MODES)
def test_oracle_cases_match(schemes, cases, scheme_id, code_mode, key):
    scheme = schemes[scheme_id]
    assert len(cases[scheme_id]) == 5000
    mismatches = []
    for c in cases[scheme_id]:
        got = scheme.group(c, code_mode=code_mode).to_dict()
        if got != c[key]:
            mismatches.append((c["id"], got, c[key]))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:3]}"


@pytest.mark.parametrize("scheme_id", SCHEME_IDS)
@pytest.mark.parametrize("code_mode", ["raw", "mapped"])
def test_traced_path_equals_fast_path(schemes, cases, scheme_id, code_mode):
    scheme = schemes[scheme_id]
    for c in cases[scheme_id]:
        fast = scheme.group(c, code_mode=code_mode)
        traced = scheme.group(c, code_mode=code_mode, trace=True)
        # GroupResult equality ignores the trace: mdc, adrg, drg, status, drg_name.
        assert traced == fast, c["id"]
        assert traced.trace is not None
        assert traced.trace.status == fast.status.value
        assert traced.trace.render()[-1].startswith("结果：")


def test_oracle_covers_every_drg_in_raw_mode(schemes, cases):
    scheme = schemes["chs-drg-1.1"]
    reached = {scheme.group(c).drg for c in cases["chs-drg-1.1"]}
    assert set(scheme.drgs) <= reached
