"""`drgdip dlq list|show|replay`: the dead letters of the distributed mode's Kafka topics.

`list` counts each `<topic>.dlq` by consumer and reason; `show` prints each dead letter's ids
and headers (event id, type, case id, error, source, consumer; never the payload, which holds
personal data); `replay` republishes one service's dead letters not replayed yet to their
original topic, once (see `shared.dlq`). The embedded mode's bus lives only as long as its
process: there the commands refuse, and `/readyz` of the running process shows its dead letters.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from shared.events import SOURCE_TOPICS

if TYPE_CHECKING:
    from shared.dlq import DeadLetters

dlq_app = typer.Typer(help="Dead letters (distributed mode): count, inspect and replay them.",
                      no_args_is_help=True)
T = TypeVar("T")
SERVICES = ("grouper", "pricer", "review", "gateway", "ingest")

Bus = Annotated[str | None, typer.Option(help="kafka://HOST:PORT (env DRGDIP_BUS)")]
Namespace = Annotated[str | None, typer.Option(help="topic prefix of the environment (env DRGDIP_NAMESPACE)")]
Topic = Annotated[list[str] | None, typer.Option(
    "--topic", help="source topic (repeatable): " + ", ".join(SOURCE_TOPICS) + " (default: all)")]


def _run(bus: str | None, namespace: str | None, work: Callable[[DeadLetters, str], Awaitable[T]]) -> T:
    from shared.dlq import DeadLetters
    from shared.settings import ServiceSettings, load_settings

    settings = load_settings(ServiceSettings, bus=bus, namespace=namespace)
    if not settings.bus.startswith("kafka://"):
        typer.echo("error: dead letters are kept on Kafka (DRGDIP_BUS=kafka://…); the embedded bus "
                   "keeps them only inside its process: see its /readyz", err=True)
        raise typer.Exit(2)

    async def run() -> T:
        letters = DeadLetters(settings.bus, settings.namespace)
        try:
            return await work(letters, settings.bus)
        finally:
            await letters.close()

    try:
        return asyncio.run(run())
    except (OSError, TimeoutError) as e:
        typer.echo(f"error: the bus did not answer: {type(e).__name__}: {e}", err=True)
        raise typer.Exit(2) from None
    except Exception as e:
        if type(e).__module__.startswith("aiokafka"):
            typer.echo(f"error: the bus did not answer: {type(e).__name__}: {e}", err=True)
            raise typer.Exit(2) from None
        raise


def _topics(topic: list[str] | None) -> list[str]:
    for t in topic or ():
        if t.removesuffix(".dlq") not in SOURCE_TOPICS:
            raise typer.BadParameter(f"unknown topic {t!r}; one of {', '.join(SOURCE_TOPICS)}",
                                     param_hint="--topic")
    return list(topic or ())


def _service(service: str | None) -> None:
    if service is not None and service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; one of {', '.join(SERVICES)}",
                                 param_hint="--service")


@dlq_app.command("list")
def list_command(
    service: Annotated[str | None, typer.Option(help="only this consumer's dead letters")] = None,
    topic: Topic = None, bus: Bus = None, namespace: Namespace = None,
) -> None:
    """Count the dead letters of each `<topic>.dlq`: by consumer and reason, and how many are
    not replayed yet."""
    _service(service)
    topics = _topics(topic)
    letters = _run(bus, namespace, lambda dl, _b: dl.letters(topics, service))
    by_topic: dict[str, list] = {}
    for d in letters:
        by_topic.setdefault(d.topic, []).append(d)
    if not by_topic:
        typer.echo("no dead letters")
        return
    for name, found in sorted(by_topic.items()):
        pending = sum(1 for d in found if not d.replayed)
        typer.echo(f"{name}: {len(found)} dead letters, {pending} not replayed")
        kinds = Counter((d.consumer, d.reason, d.replayed) for d in found)
        for (consumer, reason, replayed), n in sorted(kinds.items()):
            typer.echo(f"  {consumer or '?':<8} {n:>6}  {reason}{'  (replayed)' if replayed else ''}")


@dlq_app.command("show")
def show_command(
    service: Annotated[str | None, typer.Option(help="only this consumer's dead letters")] = None,
    topic: Topic = None, bus: Bus = None, namespace: Namespace = None,
    all_: Annotated[bool, typer.Option("--all", help="the replayed ones too")] = False,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
) -> None:
    """Each dead letter: position, consumer, source, event id, type and case id, and the error
    (never the payload)."""
    _service(service)
    topics = _topics(topic)
    letters = _run(bus, namespace, lambda dl, _b: dl.letters(topics, service, replayed=all_))
    for d in letters[:limit]:
        event = (f"event={d.event_id} type={d.event_type} case={d.case_id}" if d.event_id
                 else f"undecodable ({len(d.message.value)} bytes)")
        typer.echo(f"{d.topic} {d.partition}/{d.offset} consumer={d.consumer} source={d.source} "
                   f"{event}{' replayed' if d.replayed else ''}\n    error: {d.error}")
    if len(letters) > limit:
        typer.echo(f"... {len(letters) - limit} more (--limit)")
    if not letters:
        typer.echo("no dead letters" + ("" if all_ else " to replay"))


@dlq_app.command("replay")
def replay_command(
    service: Annotated[str, typer.Option(help="the consumer whose dead letters are replayed")],
    topic: Topic = None, bus: Bus = None, namespace: Namespace = None,
) -> None:
    """Republish a service's dead letters not replayed yet to their original topic (once: a
    second replay republishes nothing). Fix the cause first: an event that fails again comes
    back as a new dead letter."""
    _service(service)
    topics = _topics(topic)

    async def replay(dl: DeadLetters, url: str) -> dict[str, int]:
        from shared.bus import bus_from_url

        target = bus_from_url(url, client_id="drgdip-dlq")
        await target.start()
        try:
            return await dl.replay(target, service, topics)
        finally:
            await target.stop()

    done = _run(bus, namespace, replay)
    for name, n in sorted(done.items()):
        typer.echo(f"{name}: {n} replayed to {name.removesuffix('.dlq')}")
    typer.echo(f"{sum(done.values())} dead letters of {service} replayed")
