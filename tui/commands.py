"""The `:` command bar, pure: what the user typed, as a Command (k9s' words).

:brokers :br      :databases :db      :events :ev      :logs
:ns NAME          one namespace (`:ns all` or `:ns -` for every namespace)
:select CRITERIA  the selection simulator (`:select postgresql eastus`)
:help             :q :quit  (exit)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verb = Literal["view", "namespace", "select", "quit", "help"]
VIEWS = {
    "brokers": "brokers",
    "broker": "brokers",
    "br": "brokers",
    "databases": "databases",
    "database": "databases",
    "db": "databases",
    "dbs": "databases",
    "events": "events",
    "event": "events",
    "ev": "events",
    "logs": "logs",
    "log": "logs",
}
ALL_NAMESPACES = ("all", "-", "*")


class CommandError(ValueError):
    """A command that cannot be read; one line for the command bar."""


@dataclass(frozen=True, slots=True)
class Command:
    verb: Verb
    argument: str = ""  # the view, the namespace ("" for all) or the criteria


def parse_command(text: str) -> Command:
    words = text.strip().removeprefix(":").split()
    if not words:
        raise CommandError("type a command: brokers, databases, events, logs, ns, select, q")
    head, rest = words[0].lower(), words[1:]
    if head in ("q", "q!", "quit", "exit"):
        return Command("quit")
    if head in ("help", "?", "h"):
        return Command("help")
    if head in VIEWS:
        return Command("view", VIEWS[head])
    if head in ("ns", "namespace"):
        if len(rest) != 1:
            raise CommandError(":ns NAME (or :ns all)")
        name = rest[0]
        return Command("namespace", "" if name in ALL_NAMESPACES else name)
    if head in ("select", "sel", "simulate"):
        return Command("select", " ".join(rest))
    raise CommandError(
        f"unknown command {head!r}: brokers, databases, events, logs, ns, select, help, q"
    )
