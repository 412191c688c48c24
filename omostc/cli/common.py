"""What every command shares: printing located diagnostics, and running an action over many
inputs so that one bad input never stops the rest."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import NoReturn

import click

from omostc.diagnostics import CompileError, Diagnostic, OmostcError, printable


def print_diagnostics(diagnostics: Iterable[Diagnostic], quiet: bool = False) -> None:
    for d in diagnostics:
        if quiet and d.severity == "warning":
            continue
        click.echo(d.format(), err=True)


def run_each(items: list[str], action: Callable[[str], None], what: str) -> None:
    """Run ``action`` on every item; report failures at the end; exit 1 if any failed."""
    failed: list[str] = []
    for item in items:
        try:
            action(item)
        except CompileError as exc:
            print_diagnostics(exc.diagnostics)
            if exc.truncated:
                click.echo(f"{printable(item)}: truncated program", err=True)
            failed.append(item)
        except OSError as exc:
            click.echo(printable(f"{exc.filename or item}: error: {exc.strerror or exc}"), err=True)
            failed.append(item)
        except OmostcError as exc:
            print_diagnostics(located(exc, item))
            failed.append(item)
    if failed:
        if len(items) > 1:
            click.echo(f"\n{len(failed)} of {len(items)} {what} failed:", err=True)
            for item in failed:
                click.echo(f"  {printable(item)}", err=True)
        sys.exit(1)



def located(exc: OmostcError, file: str | None) -> list[Diagnostic]:
    """An error's diagnostics, those that name no file attributed to ``file``."""
    found = exc.diagnostics or [Diagnostic("error", str(exc) or type(exc).__name__, file=None)]
    return [d if d.file or not file else replace(d, file=file) for d in found]


def fail(exc: OmostcError, file: str | None = None) -> NoReturn:
    """Print an error's diagnostics and exit with status 1."""
    print_diagnostics(located(exc, file))
    sys.exit(1)
