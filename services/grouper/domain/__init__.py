"""The grouper's domain core (pure): the CHS-DRG grouping engine (scheme loading, grouping,
traces, registry and diffs), which scheme is in force, and how a received case is grouped
(with its DIP group) as the live stage, a regroup and the draft check do it.

No database, web or bus here, so that the service, the CLI and benchmarks share it.
"""

from .book import SchemeBook
from .catalogues import CatalogueRegistration, catalogue_registration
from .diff import SchemeDiff, diff_schemes
from .draft import DraftCase, check_draft
from .engine import GROUPED_STATUSES, GroupResult, GroupStatus
from .errors import RegistryError, SchemeError
from .grouping import (
    NO_SCHEME,
    Grouping,
    Migration,
    ToGroup,
    cc_lift,
    dip_grouping,
    engine_input,
    group_case,
    group_cases,
    grouping_trace,
)
from .registry import RegistryEntry, SchemeRegistry
from .rules import CONDITIONS, condition
from .scheme import Scheme, load_scheme
from .trace import Trace
from .validation import CHECKS, DEFAULT_VALIDATION

__all__ = [
    "CHECKS",
    "CONDITIONS",
    "DEFAULT_VALIDATION",
    "GROUPED_STATUSES",
    "NO_SCHEME",
    "CatalogueRegistration",
    "DraftCase",
    "GroupResult",
    "GroupStatus",
    "Grouping",
    "Migration",
    "RegistryEntry",
    "RegistryError",
    "Scheme",
    "SchemeBook",
    "SchemeDiff",
    "SchemeError",
    "SchemeRegistry",
    "ToGroup",
    "Trace",
    "catalogue_registration",
    "cc_lift",
    "check_draft",
    "condition",
    "diff_schemes",
    "dip_grouping",
    "engine_input",
    "group_case",
    "group_cases",
    "grouping_trace",
    "load_scheme",
]
