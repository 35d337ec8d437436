"""The grouper's domain core (pure): the CHS-DRG grouping engine (scheme loading, grouping,
traces, registry and diffs), which scheme is in force, and how a received case is grouped
(with its DIP group) as the live stage, a regroup and the draft check do it; local schemes
built from a change set over a national scheme.

No database, web or bus here, so that the service, the CLI and benchmarks share it.
"""

from .book import SchemeBook
from .catalogues import CatalogueRegistration, catalogue_registration
from .changeset import (
    ChangeSet,
    SchemeDocs,
    apply_change_set,
    change_summary,
    compile_local_scheme,
    migration_table,
    parse_change_set,
    read_scheme_docs,
    write_scheme_folder,
)
from .diff import SchemeDiff, diff_schemes
from .draft import DraftCase, check_draft
from .engine import GROUPED_STATUSES, GroupResult, GroupStatus
from .errors import ChangeSetError, RegistryError, SchemeError
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
    "ChangeSet",
    "ChangeSetError",
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
    "SchemeDocs",
    "SchemeError",
    "SchemeRegistry",
    "ToGroup",
    "Trace",
    "apply_change_set",
    "catalogue_registration",
    "change_summary",
    "compile_local_scheme",
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
    "migration_table",
    "parse_change_set",
    "read_scheme_docs",
    "write_scheme_folder",
]
