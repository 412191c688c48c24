"""``omostc render`` and ``omostc profiles``: argument parsing and printing around
``omostc.render_batch``. The render-settings flags and each backend's option flags are derived
from their declarations (``omostc.settings``), so they are checked by the same rules as specs
and profiles, before any model loads."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager, redirect_stdout
from typing import NoReturn

import click

from omostc.backends import registry
from omostc.backends.common.logs import quiet_libraries
from omostc.cli.common import fail, located, print_diagnostics
from omostc.diagnostics import OmostcError, SettingsError, printable
from omostc.settings import click_options, fields_of, gather
from omostc.spec.render import MAX_SEED, RenderOptions

COMMAND_LINE = "command line"


def _backend_options() -> list[Callable]:
    """One flag per backend option name across the registry (a name two backends share, such as
    --dtype, is one flag, described by the first); the chosen backend must have the options given,
    or the render is a usage error."""
    owner: dict[str, type] = {}
    backends: dict[str, list[str]] = {}
    for entry in registry.entries().values():
        for f, _, s in fields_of(entry.options):
            if s.cli:
                owner.setdefault(f.name, entry.options)
                backends.setdefault(f.name, []).append(entry.name)
    options: list[Callable] = []
    for cls in dict.fromkeys(owner.values()):
        others = tuple(f.name for f, _, _ in fields_of(cls) if owner.get(f.name) is not cls)
        options += click_options(cls, dest_prefix="backend__", exclude=others,
                                 help_prefix=lambda name: f"({', '.join(backends[name])}) ")
    return options


def _apply(options: list[Callable], f: Callable) -> Callable:
    for option in reversed(options):
        f = option(f)
    return f


def _render_flags(f: Callable) -> Callable:
    return _apply([*click_options(RenderOptions, dest_prefix="render__"), *_backend_options()], f)


@click.command()
@click.argument("specs", nargs=-1)
@click.option("-p", "--profile", "profile_name", help="Render profile: a shipped one (`omostc profiles`), "
              "runners/NAME.yaml, or a file. Default: preview.")
@click.option("--backend", type=click.Choice(registry.names()),
              help="Render with this backend (default: the profile's; with --model and a model-free profile, "
                   f"{registry.MODEL_DEFAULT}).")
@click.option("--model", help="The model: a hub id, a diffusers folder or a single .safetensors file.")
@click.option("-o", "--out", "out_dir", default="renders", show_default=True, type=click.Path(file_okay=False),
              help="Images go to OUT/<spec name>/<seed>.png, rows to OUT/manifest.jsonl.")
@click.option("--seed", "seeds", type=click.IntRange(0, MAX_SEED), multiple=True,
              help="First seed (repeatable; each starts a run of --images seeds); default: the spec's, the "
                   "profile's seeds, else 12345.")
@click.option("--images", type=click.IntRange(1, 1000),
              help="Images per first seed, counting up (default: the profile's, else 1).")
@_render_flags
@click.option("--force", is_flag=True, help="Render again what is already rendered.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: one actor per GPU (or --workers CPU workers) holding a loaded pipeline.")
@click.option("--workers", type=click.IntRange(1, 4096), help="Ray actors (default: one per GPU, else 1).")
@click.option("--ray-address", help="A running Ray cluster (default: start a local instance).")
@click.option("--threads", type=click.IntRange(1, 1024), help="CPU threads per renderer (default: torch's, "
              "1 per Ray worker). CPU results are bit-identical between runs with the same count.")
@click.option("--log", "log_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: for CI, every line on stdout is one JSON object with an \"event\": item (a manifest "
                   "row), diagnostic (located errors and warnings), waiting, pruned, summary "
                   "(schemas/log-event.schema.json); nothing else is printed there.")
@click.option("--from-png", "from_png", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Re-render an omostc PNG exactly from its embedded spec, settings, backend and model.")
@click.option("--prune", is_flag=True, help="Afterwards remove the manifest rows that the inputs given did not "
              "produce (specs no longer in the batch, seeds no longer asked for) and the PNGs omostc recorded in "
              "them inside OUT; each removal is listed. An input that fails to load keeps its rows.")
@click.option("--dry-run", is_flag=True, help="With --prune: list what it would remove; render and remove nothing.")
@click.option("-q", "--quiet", is_flag=True, help="Failures and the summary only.")
def render(specs, profile_name, backend, model, out_dir, seeds, images, force, executor, workers, ray_address,
           threads, log_format, from_png, prune, dry_run, quiet, **flags) -> None:
    """Render scene specs (or Canvas code) in a batch: incremental, resumable, one failure never
    stops the rest. One batch writes into OUT at a time: a second one waits for the first.

    \b
    Seeds: the seeds listed are --seed (repeatable), else the spec's render.seed, else the
    profile's seeds:, else 12345. --images N (else the profile's images:, else 1) is the images
    per spec: the listed seeds first, then counting up from the last one: --seed 5 --images 3
    renders 5, 6, 7; --seed 5 --seed 100 --images 3 renders 5, 100, 101. A seed asked for twice
    renders once. --batch-seeds omost draws the N images from one generator seeded with the
    first seed, as Omost's app does (image k saved as seed+k).
    --from-png images keep their own seeds and settings (a warning names flags they ignore).

    \b
    Outputs: OUT/<name>/<seed>.png, the name safe everywhere (never hidden, manifest.*, or a
    Windows device name); two inputs with one name: the later one fails, naming both."""
    if not specs and not from_png:
        raise click.UsageError("give spec files, or --from-png images")
    if dry_run and not prune:
        raise click.UsageError("--dry-run lists what --prune would remove: give --prune too")
    from omostc.batch.api import render_batch
    from omostc.batch.events import diagnostic_event, item_event, pruned_event

    # with --log json, stdout is the log's alone until the command ends (click closes the resource)
    emit = click.get_current_context().with_resource(json_stdout()) if log_format == "json" else None
    settings = gather(RenderOptions, flags, dest_prefix="render__")
    backend_options = {k[len("backend__"):]: v for k, v in flags.items()
                       if k.startswith("backend__") and v is not None and v is not False}  # an unset flag is False
    quiet_output = quiet or log_format == "json"
    live = log_format == "text" and not quiet and sys.stderr.isatty()
    shown: set[str | None] = set()

    def loaded(report) -> None:
        if emit is not None:
            for d in report.warnings:
                emit(diagnostic_event(d))
        else:
            print_diagnostics(report.warnings, quiet_output)
        shown.update(d.file for d in report.warnings if d.severity == "error")  # printed with their context
        if any(registry.get(p.backend).needs_model for p in [report.profile, *report.profiles]):  # a PNG's own too
            quiet_libraries(quiet_output)

    def show_step(item, position: int, total: int, step: int, steps: int) -> None:  # one status line
        bar = "#" * (20 * step // steps)
        name = printable(item.name)
        click.echo(f"\r  [{position}/{total}] {name} seed {item.seed} [{bar:<20}] step {step}/{steps}\033[K",
                   err=True, nl=False)

    warned: set[tuple[str, str]] = set()

    def report_item(result) -> None:
        for message in result.warnings if not quiet_output else []:  # once per input, not per seed
            if (result.source, message) not in warned:
                warned.add((result.source, message))
                line = f"{printable(result.source)}: warning: {printable(message)}"
                click.echo(f"\r{line}\033[K" if live else line, err=True)
        if emit is not None:
            emit(item_event(result))
        elif result.status == "failed":
            if not (result.seed is None and result.source in shown):
                click.echo(f"{printable(result.source)}: error: {printable(result.error or '')}", err=True)
        elif not quiet:
            line = f"{printable(result.name)} seed {result.seed}: {result.status} -> {printable(result.output or '')}"
            click.echo(f"\r{line}\033[K" if sys.stderr.isatty() else line, err=True)

    def waiting(message: str) -> None:
        if emit is not None:
            emit({"event": "waiting", "message": message})
        else:
            click.echo(printable(message), err=True)

    def failed(exc: OmostcError) -> NoReturn:
        if emit is None:
            fail(exc)
        for d in located(exc, None):
            emit(diagnostic_event(d))
        sys.exit(1)

    try:
        report = render_batch(list(specs), profile=profile_name, out_dir=out_dir, model=model, backend=backend,
                              settings=settings, backend_options=backend_options, seeds=list(seeds) or None,
                              images=images, from_png=list(from_png), force=force, executor=executor,
                              workers=workers, ray_address=ray_address, threads=threads, on_result=report_item,
                              on_progress=show_step if live else None, on_loaded=loaded, prune=prune,
                              dry_run=dry_run, on_wait=waiting)
    except SettingsError as exc:
        if all(d.file == COMMAND_LINE for d in exc.diagnostics):
            raise click.UsageError("; ".join(d.message for d in exc.diagnostics)) from None
        failed(exc)
    except OmostcError as exc:  # a profile that cannot be used: nothing to run
        failed(exc)
    except OSError as exc:  # the output folder itself (what was written so far stays, whole)
        failed(OmostcError(f"cannot write: {exc.strerror or exc}", file=str(exc.filename or out_dir)))
    for removed in report.removed:
        if emit is not None:
            emit(pruned_event(removed, dry_run))
        else:
            what = printable(removed.output) if removed.output else "its row"
            row = f"{printable(removed.name)}" + (f" seed {removed.seed}" if removed.seed is not None else "")
            click.echo(f"{'would remove' if dry_run else 'removed'}: {what} ({row}: not produced by the inputs "
                       "given)", err=True)
    counts = report.counts
    if emit is not None:
        emit({"event": "summary", **counts, "pruned": len(report.removed), "dry_run": dry_run,
              "profile": "; ".join(report.profile_names), "manifest": str(report.manifest)})
    else:
        pruned = f", {len(report.removed)} {'to prune' if dry_run else 'pruned'}" if prune else ""
        click.echo(f"{counts['rendered']} rendered, {counts['skipped']} already rendered, {counts['failed']} failed"
                   f"{pruned} ({'profile' if len(report.profile_names) == 1 else 'profiles'} "
                   f"{printable('; '.join(report.profile_names))}, {report.manifest})", err=True)
        for r in report.failed:
            click.echo(f"  failed: {printable(r.source)}" + (f" seed {r.seed}" if r.seed is not None else ""), err=True)
    sys.exit(report.exit_status)


@contextmanager
def json_stdout():
    """For --log json: yields ``emit``, which writes one event as one line on stdout, while
    everything else that would reach stdout (a library's print, a worker's output) goes to
    stderr, down to the file descriptor when stdout is one."""
    from omostc.batch.events import line

    stream = sys.stdout
    saved = None
    try:
        fd = stream.fileno()
        stream.flush()
        saved = os.dup(fd)
        os.dup2(sys.stderr.fileno(), fd)
        stream = open(saved, "w", encoding="utf-8", closefd=False)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # not a real file (a test's capture)
        saved = None

    def emit(event: dict) -> None:
        stream.write(line(event) + "\n")
        stream.flush()

    try:
        with redirect_stdout(sys.stderr):
            yield emit
    finally:
        if saved is not None:
            stream.close()
            sys.stdout.flush()
            os.dup2(saved, sys.stdout.fileno())
            os.close(saved)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per profile.")
def profiles(as_json: bool) -> None:
    """List the render profiles: shipped with omostc, and the project's own in runners/."""
    from omostc.batch.profile import available_profiles, load_profile

    for name, path in available_profiles().items():
        try:
            profile = load_profile(str(path))
        except OmostcError as exc:
            if as_json:
                click.echo(json.dumps({"name": name, "error": exc.summary(), "defined": str(path)}))
            else:
                click.echo(f"{name:<16} (does not load: {printable(exc.summary())})  {path}")
            continue
        if as_json:
            click.echo(json.dumps({"name": name, "backend": profile.backend, "model": profile.model,
                                   "defined": profile.origin, "description": profile.description}))
        else:
            click.echo(f"{name:<16} {profile.backend:<8} {profile.model or '-':<44} {profile.origin}")
