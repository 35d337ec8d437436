"""Named input checks of the validation step (scheme README, "Evaluation algorithm" step 2).

A scheme picks an ordered list of these names in the `evaluation.validation` block of
mdc.json; schemes without the block use `DEFAULT_VALIDATION`. A check returns True when the
case passes. It sees the values after code translation and after `missing_numbers` has
been applied, and only values of the right type (the engine rejects wrongly typed input
before this step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    test: Callable[[int | None, int | None, int | None, int | None, Sequence[str]], bool]
    description: str  # Chinese, for the trace


CHECKS: dict[str, Check] = {}


def _check(name: str, description: str):
    def register(fn):
        CHECKS[name] = Check(name, fn, description)
        return fn

    return register


@_check("sex_1_or_2", "性别必须为 1（男）或 2（女）")
def _sex_1_or_2(sex, age, age_days, bw, dx):
    return sex == 1 or sex == 2


@_check("sex_present", "性别不能为空")
def _sex_present(sex, age, age_days, bw, dx):
    return sex is not None


@_check("age_present", "年龄不能为空")
def _age_present(sex, age, age_days, bw, dx):
    return age is not None


@_check("newborn_age_days_present", "年龄为 0 岁时，年龄（天）不能为空")
def _newborn_age_days_present(sex, age, age_days, bw, dx):
    return not (age == 0 and age_days is None)


@_check("newborn_birth_weight_present", "出生 28 天内的新生儿，出生体重不能为空")
def _newborn_birth_weight_present(sex, age, age_days, bw, dx):
    return not (age == 0 and age_days is not None and age_days <= 28 and bw is None)


@_check("diagnoses_present", "至少要有一个诊断")
def _diagnoses_present(sex, age, age_days, bw, dx):
    return len(dx) > 0


DEFAULT_VALIDATION: tuple[str, ...] = (
    "sex_1_or_2",
    "age_present",
    "newborn_age_days_present",
    "newborn_birth_weight_present",
    "diagnoses_present",
)
