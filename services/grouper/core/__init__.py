"""Pure CHS-DRG grouping engine: scheme loading, grouping, traces, registry and diffs.

Standard library only, so that services, the CLI and benchmarks can share it.
"""

from .diff import SchemeDiff, diff_schemes
from .engine import GROUPED_STATUSES, GroupResult, GroupStatus
from .errors import RegistryError, SchemeError
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
    "GroupResult",
    "GroupStatus",
    "RegistryEntry",
    "RegistryError",
    "Scheme",
    "SchemeDiff",
    "SchemeError",
    "SchemeRegistry",
    "Trace",
    "condition",
    "diff_schemes",
    "load_scheme",
]
