"""The audit of the administrative commands: `drgdip scheme import`, `policy import`, `settle`,
`reprice` … leave the same append-only `gateway_audit` row as the gateway's route for the same
change, with `cli:<user>` as the actor.

The commands live in the services' `cli.py` and answer a summary of the change they made (the
route's answer); the gateway owns the audit. Services never import each other, so the two meet
here, in the composition layer: `audited(action, command)` is the command with an `--audit-db`
option, recording the row once the command took effect (a refused command records nothing).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer

from services.gateway.cli import record_command

AuditDb = Annotated[str | None, typer.Option(
    "--audit-db", envvar="DRGDIP_AUDIT_DB",
    help="the gateway's database, where the audit row goes (env DRGDIP_AUDIT_DB; default: --db "
         "or DRGDIP_DB, the embedded mode's one database)")]


def audited(action: str, command: Callable[..., Mapping[str, Any] | None]) -> Callable[..., None]:
    """`command` (answering its change's summary) with `--audit-db`, recording `action` once it
    returned."""
    signature = inspect.signature(command, eval_str=True)
    if "audit_db" in signature.parameters:
        raise TypeError(f"{command.__name__} has its own audit_db parameter")

    @functools.wraps(command)
    def run(**kwargs: Any) -> None:
        audit_db = kwargs.pop("audit_db", None)
        answer = command(**kwargs)
        if answer is not None:
            record_command(action, answer, audit_db or kwargs.get("db"))

    params = [*signature.parameters.values(),
              inspect.Parameter("audit_db", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=AuditDb)]
    run.__signature__ = signature.replace(parameters=params, return_annotation=None)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run
