"""Property: any input gives a result with a valid status, never an exception."""

from __future__ import annotations

import pytest
from grouper_testkit import scheme_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.grouper.domain import GroupStatus, load_scheme

_SCHEMES = {}


def _scheme(sid):
    # Loaded once per process: hypothesis forbids function-scoped fixtures in @given.
    if sid not in _SCHEMES:
        _SCHEMES[sid] = load_scheme(scheme_path(sid))
    return _SCHEMES[sid]


# Real codes make the search reach the deep parts of the algorithm, not only FAIL.
_REAL_DX = ["I21.900x011", "S06.301", "S37.500", "Z37.000", "O80.000", "P07.100", "B20.000",
            "J18.900", "I63.400", "K35.800", "C92.000", "A17.000+G01*", "B06.801+J17.1*"]
_REAL_PX = ["40.9x06", "36.0700", "96.7201", "96.0400", "00.6400x007", "38.4701", "99.2500"]

codes = st.lists(st.one_of(st.sampled_from(_REAL_DX + _REAL_PX), st.text(max_size=12)), max_size=6)
number = st.one_of(st.none(), st.integers(min_value=-10**6, max_value=10**6), st.text(max_size=4),
                   st.booleans(), st.floats(allow_nan=True))
anything = st.one_of(st.none(), st.integers(), st.text(max_size=5), codes,
                     st.lists(st.one_of(st.integers(), st.none(), st.text(max_size=3)), max_size=3))

cases = st.fixed_dictionaries(
    {},
    optional={
        "sex": number,
        "age": number,
        "age_days": number,
        "birth_weight": number,
        "diagnoses": st.one_of(codes, anything),
        "procedures": st.one_of(codes, anything),
    },
)


@pytest.mark.parametrize("scheme_id", ["chs-drg-1.1", "quanzhou-2023"])
@pytest.mark.parametrize("code_mode", ["raw", "mapped"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases)
def test_never_raises(scheme_id, code_mode, case):
    scheme = _scheme(scheme_id)
    r = scheme.group(case, code_mode=code_mode)
    assert r.status in set(GroupStatus)
    traced = scheme.group(case, code_mode=code_mode, trace=True)
    assert traced == r
    traced.trace.render()
    traced.to_dict()
    if r.status in (GroupStatus.SUCCESS, GroupStatus.QY):
        assert r.mdc.startswith("MDC") and r.drg in scheme.drgs or r.drg == r.adrg
    else:
        assert (r.mdc, r.adrg, r.drg) == ("0000", "00", "0000")


@settings(max_examples=200, deadline=None)
@given(sex=number, age=number, age_days=number, birth_weight=number,
       diagnoses=codes, procedures=codes)
def test_valid_shapes_with_any_values(sex, age, age_days, birth_weight, diagnoses, procedures):
    case = {"sex": sex, "age": age, "age_days": age_days, "birth_weight": birth_weight,
            "diagnoses": diagnoses, "procedures": procedures}
    for sid in ("chs-drg-1.1", "quanzhou-2023"):
        for mode in ("raw", "mapped"):
            assert _scheme(sid).group(case, code_mode=mode).status in set(GroupStatus)
