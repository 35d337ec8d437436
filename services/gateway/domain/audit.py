"""The audit of administrative actions: what is recorded, and the CSV it is exported as.

Append-only: rows are inserted, never updated or deleted. An action is recorded once it took
effect (the change committed or the upstream accepted it); an unmasked read of personal data is
recorded with the read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

TOKEN_CREATED = "token.created"
TOKEN_REVOKED = "token.revoked"
POLICY_IMPORTED = "policy.imported"
DIP_POLICY_IMPORTED = "dip-policy.imported"
DIP_CATALOGUE_REGISTERED = "dip-catalogue.registered"
SCHEME_REGISTERED = "scheme.registered"
SCHEME_BUILT = "scheme.built"  # a local scheme built from a change set (and registered, when asked)
SETTLEMENT_RUN = "settlement.run"
REPRICED = "cases.repriced"
REGROUPED = "cases.regrouped"
ADVANCE_RECORDED = "advance.recorded"
PERSONAL_DATA_READ = "personal-data.read"
AUDIT_READ = "audit.exported"
FLAG_DECIDED = "flag.decided"
FLAG_ANSWERED = "flag.answered"
REVIEW_RUN = "review.run"
# negotiation rounds (协商谈判) and the feedback channel (意见收集), §14
NEGOTIATION_PUBLISHED = "negotiation.published"
NEGOTIATION_COMMENTED = "negotiation.commented"
NEGOTIATION_ANSWERED = "negotiation.answered"
NEGOTIATION_ADOPTED = "negotiation.adopted"
FEEDBACK_SENT = "feedback.sent"
FEEDBACK_TRIAGED = "feedback.triaged"
FEEDBACK_ANSWERED = "feedback.answered"
FEEDBACK_CLOSED = "feedback.closed"
DECLARATION_SUBMITTED = "declaration.submitted"
CALENDAR_IMPORTED = "calendar.imported"
BUDGET_SET = "budget.set"
INDICATORS_REBUILT = "indicators.rebuilt"
SIGNED_IN = "dashboard.signed-in"  # a dashboard session opened with a token (never the token itself)
SIGNED_OUT = "dashboard.signed-out"
ACTIONS = (TOKEN_CREATED, TOKEN_REVOKED, POLICY_IMPORTED, DIP_POLICY_IMPORTED, DIP_CATALOGUE_REGISTERED,
           SCHEME_REGISTERED, SCHEME_BUILT, SETTLEMENT_RUN, REPRICED, REGROUPED, ADVANCE_RECORDED, PERSONAL_DATA_READ,
           AUDIT_READ, FLAG_DECIDED, FLAG_ANSWERED, REVIEW_RUN, NEGOTIATION_PUBLISHED, NEGOTIATION_COMMENTED,
           NEGOTIATION_ANSWERED, NEGOTIATION_ADOPTED, FEEDBACK_SENT, FEEDBACK_TRIAGED, FEEDBACK_ANSWERED,
           FEEDBACK_CLOSED, DECLARATION_SUBMITTED, CALENDAR_IMPORTED, BUDGET_SET, INDICATORS_REBUILT,
           SIGNED_IN, SIGNED_OUT)


def _span(a: Mapping[str, Any], first: str, last: str) -> str:
    return f"{a.get(first) or ''}..{a.get(last) or ''}"


# What a change's row names as its subject, from the answer of the change (the API route's JSON
# answer, or the same summary from the command that made it): one subject per action whichever
# way the change was made.
_SUBJECTS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    POLICY_IMPORTED: lambda a: f"{a.get('policy_id')} v{a.get('version')}",
    DIP_POLICY_IMPORTED: lambda a: f"{a.get('policy_id')} v{a.get('version')}",
    DIP_CATALOGUE_REGISTERED: lambda a: f"{a.get('region')} {_span(a, 'valid_from', 'valid_to')}",
    SCHEME_REGISTERED: lambda a: f"{a.get('scheme')} {a.get('region')} {_span(a, 'valid_from', 'valid_to')}",
    SCHEME_BUILT: lambda a: f"{a.get('scheme')} over {a.get('base')}",
    SETTLEMENT_RUN: lambda a: f"{a.get('policy_id')} {a.get('period')} v{a.get('version')}",
    REPRICED: lambda a: f"{a.get('region')} {_span(a, 'from', 'to')}",
    REGROUPED: lambda a: f"{a.get('scheme')} {_span(a, 'from', 'to')}",
    ADVANCE_RECORDED: lambda a: f"{a.get('hospital')} {a.get('year')}",
    DECLARATION_SUBMITTED: lambda a: f"{a.get('hospital_code')} {a.get('period')}",
    CALENDAR_IMPORTED: lambda a: str(a.get("year")),
    BUDGET_SET: lambda a: f"{a.get('region')} {a.get('year')} v{a.get('version')}",
}


def change_subject(action: str, answer: Mapping[str, Any]) -> str | None:
    """The subject an administrative change is recorded under (None for an action without one)."""
    subject = _SUBJECTS.get(action)
    return subject(answer) if subject else None


def change_detail(action: str, answer: Mapping[str, Any]) -> dict[str, Any]:
    """What a change's row keeps of its answer: all of it, but a settlement run's statements
    (its figures are kept; the statements are stored by the pricer)."""
    return {k: v for k, v in answer.items() if not (action == SETTLEMENT_RUN and k == "statements")}

CSV_COLUMNS = ("id", "at", "action", "actor", "role", "token_id", "client", "subject", "detail")
# the monitoring flags' workflow audit (review's, append-only): answers and decisions
FLAG_HISTORY_COLUMNS = ("id", "flag_id", "at", "action", "actor", "role", "hospital_code", "before", "after",
                        "reason")
