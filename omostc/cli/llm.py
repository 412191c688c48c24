"""``omostc generate``, ``edit`` and ``chat``: argument parsing and printing around
``omostc.generate``, ``omostc.edit`` and ``ChatSession``."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, NoReturn

import click

from omostc.cli.common import located
from omostc.cli.llm_report import Report, kept, missing_folder, output_problem
from omostc.compiler.budget import MIN_MAX_TOKENS
from omostc.diagnostics import CompileError, Diagnostic, LLMError, OmostcError, printable
from omostc.files import write_text_atomic
from omostc.llm.api import DEFAULT_MODEL, GRAMMAR_MODES, MODEL_KINDS, LLMSettings
from omostc.llm.conversation import (
    CONTEXT_TOKENS,
    DEFAULT_TIMEOUT,
    MAX_NEW_TOKENS,
    MAX_TIMEOUT,
    TEMPERATURE,
    TOP_P,
    SamplingOptions,
    hand_edited,
)
from omostc.spec.model import Scene
from omostc.spec.yamlio import dumps_spec, schema_ref_for


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and math.isnan(value):  # FloatRange lets NaN through: it compares false with both ends
        raise click.BadParameter("must be a number of seconds, not nan", ctx, param)
    return value


def _llm_options(f: Callable) -> Callable:
    for option in reversed([
        click.option("--base-url", envvar="OMOSTC_LLM_URL",
                     help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 (llama.cpp, vLLM, SGLang, "
                          "TabbyAPI, Ollama, LM Studio, OpenAI); or $OMOSTC_LLM_URL. Without it the model runs here, "
                          "with transformers. README: 'LLM servers'."),
        click.option("--model", "llm_model", envvar="OMOSTC_LLM_MODEL", default=DEFAULT_MODEL,
                     show_default=True, help="Hub id or folder (transformers), or the name the server knows."),
        click.option("--api-key", envvar="OMOSTC_LLM_API_KEY", help="Bearer token, if the server wants one."),
        click.option("--retries", type=click.IntRange(0, 20), default=0, show_default=True,
                     help="Ask again, with a new seed, when an answer does not compile."),
        click.option("--seed", type=int, help="Sampling seed."),
        click.option("--temperature", type=click.FloatRange(0, 2), default=TEMPERATURE, show_default=True),
        click.option("--top-p", type=click.FloatRange(0, 1), default=TOP_P, show_default=True),
        click.option("--max-tokens", type=click.IntRange(16, 32768), default=MAX_NEW_TOKENS, show_default=True,
                     help=f"Most tokens in an answer. Constrained, at least {MIN_MAX_TOKENS}: the grammar then "
                          "keeps every answer a whole program within it."),
        click.option("--context", type=click.IntRange(256, 10_000_000), default=None,
                     help="The model's context in tokens (default: what the server says -- llama.cpp /props, "
                          f"vLLM /v1/models -- or the model's config, else {CONTEXT_TOKENS}). Older turns are "
                          "dropped, then the answer's budget lowered, to fit."),
        click.option("--partial", is_flag=True,
                     help="An answer cut short (the token limit) keeps its complete calls, with a warning of what "
                          "was dropped (as `omostc compile --partial`)."),
        click.option("-o", "--output", metavar="FILE",
                     help="Write the spec here (else stdout); checked before the model is asked. A missing "
                          "folder is created."),
        click.option("--constrain/--no-constrain", default=None,
                     help="Decode under the Canvas grammar, so every answer compiles (default: on with --grammar, "
                          "and for models not trained on Omost, whose name lacks 'omost'). With --base-url and no "
                          "--grammar, the server is asked what it is (llama.cpp, vLLM, SGLang)."),
        click.option("--grammar", "grammar_mode", type=click.Choice(list(GRAMMAR_MODES)),
                     help="Send the grammar to a server, always, in its field: llama.cpp `grammar`, vllm "
                          "`structured_outputs` (v0.12+), vllm-legacy `guided_grammar`, sglang `ebnf`, tabbyapi "
                          "`grammar_string`; json-schema: the scene spec's JSON Schema as `response_format` "
                          "(Ollama, LM Studio, OpenAI; the spec is then turned into code)."),
        click.option("--model-kind", type=click.Choice(list(MODEL_KINDS)), default=None,
                     help="generic: a model not trained on Omost (Qwen, Llama 3.x instruct, ...) gets instructions "
                          "and a worked example (default: omost if the name says so, else generic)."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True, max=MAX_TIMEOUT), default=None,
                     callback=_seconds, metavar="SECONDS",
                     help="Give up on a server that stays silent this long: to connect, for the first token, or "
                          f"between tokens (a stall; default {DEFAULT_TIMEOUT:g}); a stalled answer is kept in a "
                          "recovery file. For a model run here: the whole generation (default: no limit)."),
        click.option("-q", "--quiet", is_flag=True,
                     help="Do not stream the answer or show the waiting line; failed attempts take one line each."),
        click.option("-v", "--verbose", is_flag=True,
                     help="Show the model libraries' progress bars (loading weights) when the model runs here."),
    ]):
        f = option(f)
    return f


def _settings(kw: dict[str, Any]) -> LLMSettings:
    return LLMSettings(model=kw["llm_model"], base_url=kw["base_url"], api_key=kw["api_key"],
                       constrain=kw["constrain"], grammar=kw["grammar_mode"], model_kind=kw["model_kind"],
                       retries=kw["retries"], timeout=kw["timeout"], context=kw["context"], partial=kw["partial"],
                       sampling=SamplingOptions(kw["temperature"], kw["top_p"], kw["max_tokens"], kw["seed"]))


def _print(diagnostics: Iterable[Diagnostic], quiet: bool = False) -> None:
    """Print diagnostics, escaped for the terminal: they quote model answers and server replies."""
    for d in diagnostics:
        if not (quiet and d.severity == "warning"):
            click.echo(printable(d.format()), err=True)


def _fail(exc: OmostcError, file: str | None = None) -> NoReturn:
    _print(located(exc, file))
    sys.exit(1)


def _backend(settings: LLMSettings, quiet: bool) -> Any:
    """The model or server client, after saying what constrains its answers (as it is sent)."""
    from omostc.llm.api import chat_backend, describe_constraint

    try:
        backend = chat_backend(settings)
    except OmostcError as exc:
        _fail(exc)
    report = describe_constraint(backend, (settings.sampling or SamplingOptions()).max_tokens)
    if not quiet or getattr(backend, "constraint_note", None):
        click.echo(report, err=True)
    return backend


def _answer(ask: Callable[..., Any], kw: dict[str, Any]) -> None:
    """Run ``ask(settings, report, backend)`` (``omostc.generate`` or ``edit``): check the output
    first, stream, report each attempt, write; keep the answer in a recovery file when it cannot be."""
    quiet, output, retries = kw["quiet"], kw["output"], kw["retries"]
    if output and (problem := output_problem(output)):
        click.echo(problem, err=True)
        sys.exit(1)
    settings = _settings(kw)
    _library_output(settings, kw["verbose"])
    report = Report(quiet, what="the model" if settings.base_url is None else "the first token")
    try:
        answer = ask(settings, report, _backend(settings, quiet))
    except KeyboardInterrupt:  # outside an answer (loading the model, connecting): nothing to keep
        report.end_line()
        click.echo("interrupted", err=True)
        sys.exit(130)
    except CompileError as exc:
        report.end_line()
        if exc.interrupted:
            click.echo(_interrupted(exc.answer), err=True)
            sys.exit(130)
        _print(exc.diagnostics)
        click.echo(f"the answer{'s' if retries else ''} did not compile"
                   + (f" ({retries + 1} attempts)" if retries else ""), err=True)
        sys.exit(1)
    except OmostcError as exc:
        report.end_line()
        _print(located(exc, None))
        if isinstance(exc, LLMError) and exc.answer:
            click.echo(kept(exc.answer, partial=True), err=True)
        sys.exit(1)
    finally:
        report.stop()
    report.end_line()
    if answer.max_tokens and answer.max_tokens < kw["max_tokens"]:
        click.echo(f"warning: the answer's budget was lowered to {answer.max_tokens} tokens to fit the model's context "
                   f"of {answer.context} tokens (--context)", err=True)
    if answer.dropped_turns:
        click.echo(f"warning: the conversation is longer than the model's context; dropped the {answer.dropped_turns} "
                   "oldest turns (the system prompt and the latest canvas are kept)", err=True)
    _print(answer.warnings, quiet)
    if quiet and answer.generation.result.truncated:  # what --partial dropped is said even with -q
        _print(w for w in answer.warnings if "truncated" in w.message)
    if output:
        folder = missing_folder(output)
        problem = _write_spec(output, answer.scene)
        if problem:
            click.echo(problem, err=True)
            click.echo(kept(answer.generation.answer, partial=answer.generation.interrupted), err=True)
            sys.exit(1)
        if folder:
            click.echo(f"created the folder {printable(folder)}", err=True)
        click.echo(f"-> {printable(output)} (attempt {answer.generation.attempts})", err=True)
    else:
        click.echo(dumps_spec(answer.scene, schema_ref=schema_ref_for(None)), nl=False)
    if answer.generation.interrupted:
        click.echo(f"interrupted: kept the calls completed before it; {kept(answer.generation.answer, True)}",
                   err=True)
        sys.exit(130)


def _interrupted(answer: str | None) -> str:
    if not answer:
        return "interrupted before the first token"
    return f"interrupted: the answer so far has no complete call to keep; {kept(answer, partial=True)}"


def _listen(report: Report) -> dict[str, Any]:
    return {"on_text": report.text, "on_attempt": report.attempt, "on_failure": report.failure}


def _library_output(settings: LLMSettings, verbose: bool) -> None:
    """transformers' progress bars (``Loading weights``) only with ``-v``, when the model runs here."""
    if settings.base_url is not None:
        return
    try:
        from transformers.utils import logging
    except ImportError:  # the model cannot run here: the backend says so
        return
    logging.set_verbosity_error()
    (logging.enable_progress_bar if verbose else logging.disable_progress_bar)()


@click.command()
@click.argument("prompt")
@_llm_options
def generate(prompt: str, **kw: Any) -> None:
    """Ask an LLM for a scene: prompt -> Canvas code -> a compiled, validated spec."""
    from omostc.llm.api import generate as generate_scene

    _answer(lambda settings, report, backend: generate_scene(prompt, settings, backend=backend, **_listen(report)),
            kw)


@click.command()
@click.argument("spec")
@click.argument("request")
@_llm_options
def edit(spec: str, request: str, **kw: Any) -> None:
    """Ask an LLM to change a scene ("change the dragon to a dinosaur")."""
    from omostc.api import load_scene
    from omostc.llm.api import edit as edit_scene

    try:
        scene, _ = load_scene(spec)
    except OmostcError as exc:
        _fail(exc, spec)
    if hand_edited(scene):
        click.echo(printable(f"note: {spec} was edited by hand since its last answer: sending its current canvas as "
                             "the model's last turn"), err=True)
    _answer(lambda settings, report, backend: edit_scene(scene, request, settings, backend=backend,
                                                          **_listen(report)), kw)


CHAT_HELP = """Type a request; the model answers with a canvas, compiled when the answer is complete.
  /retry            ask the last request again, with a new seed
  /undo             forget the last request and its answer
  /edit TEXT        replace the last request with TEXT and ask it
  /save [FILE]      save the current scene (default: the --save file)
  /render [PROFILE] render the current scene (default profile: preview)
  /help, /quit"""


@click.command()
@_llm_options
@click.option("--save", "save_path", default="chat.yaml", show_default=True, metavar="FILE",
              help="Where each compiled scene is saved.")
def chat(save_path: str, **kw: Any) -> None:
    """An interactive session: stream the model's canvas, compile each answer, save, render."""
    from omostc.llm.chat import open_session

    target = kw["output"] or save_path
    if problem := output_problem(target):
        click.echo(problem, err=True)
        sys.exit(1)
    settings = _settings(kw)
    _library_output(settings, kw["verbose"])
    try:
        session = open_session(settings, _backend(settings, kw["quiet"]))
    except OmostcError as exc:
        _fail(exc)
    report = Report(kw["quiet"], err=False, what="the model" if settings.base_url is None else "the first token")
    written: list[str] = []  # the files this session saved its scene to
    click.echo(CHAT_HELP)

    def save(path: str) -> bool:
        if session.scene is None:
            click.echo("no scene yet")
            return False
        problem = _write_spec(path, session.scene)
        click.echo(problem or f"saved {printable(path)}")
        if not problem:
            written.append(path)
        return not problem

    def undo() -> None:
        if not session.undo():
            click.echo("nothing to undo")
            return
        click.echo("undone")
        if session.scene is not None:
            save(target)
        elif target in written:
            click.echo(f"no scene is left; {printable(target)} keeps the last one saved")

    def answer(action: Callable[[Callable[[str], None]], Any]) -> None:
        report.attempt(1, 1)
        try:
            result = action(report.text)
        except KeyboardInterrupt:
            report.end_line()
            click.echo("interrupted before the first token: /retry asks again")
            return
        except CompileError as exc:
            report.end_line()
            if exc.interrupted:
                click.echo("interrupted: the answer so far has no complete call to keep; /retry, /edit or /undo"
                           if exc.answer else "interrupted before the first token: /retry asks again")
                return
            _print(exc.diagnostics)
            click.echo("the answer did not compile: /retry, /edit or /undo")
            return
        except OmostcError as exc:
            report.end_line()
            _print(located(exc, None))
            if isinstance(exc, LLMError) and exc.answer:
                click.echo("the answer so far is kept in the conversation: /retry, /edit or /undo")
            return
        finally:
            report.stop()
        report.end_line()
        _print(result.result.warnings)
        if result.interrupted:
            click.echo("interrupted: keeping the calls completed so far")
        save(target)

    while True:
        try:
            line = input("\n> ").strip()
        except EOFError:
            break
        if not line:
            continue
        command, _, rest = line.partition(" ")
        if command in ("/quit", "/exit"):
            break
        elif command == "/help":
            click.echo(CHAT_HELP)
        elif command == "/undo":
            undo()
        elif command == "/retry":
            answer(session.retry)
        elif command == "/edit":
            answer(partial(session.edit_last, rest)) if rest else click.echo("usage: /edit TEXT")
        elif command == "/save":
            save(rest or target)
        elif command == "/render":
            if save(target):
                _render_in_chat(target, rest or None)
        elif command.startswith("/"):
            click.echo(printable(f"unknown command {command}; /help lists them"))
        else:
            answer(partial(session.ask, line))


def _write_spec(path: str, scene: Scene) -> str | None:
    """Write a spec; None, or a one-line error naming the path (the session or command goes on)."""
    name = printable(path)
    if "\x00" in path:
        return f"{name}: error: cannot write: a file name cannot contain a NUL character"
    if not os.path.basename(path) or os.path.isdir(path):
        return f"{name}: error: cannot write: it is a folder; give a file name"
    try:
        write_text_atomic(path, dumps_spec(scene, schema_ref=schema_ref_for(path)))
    except (OSError, ValueError) as exc:
        return f"{name}: error: cannot write: {printable(getattr(exc, 'strerror', None) or str(exc))}"
    return None


def _render_in_chat(spec: str, profile: str | None) -> None:
    from omostc.batch.api import render_batch

    try:
        report = render_batch([spec], profile=profile)
    except OmostcError as exc:
        _print(exc.diagnostics)
        return
    except OSError as exc:
        click.echo(f"error: cannot write: {printable(exc.strerror or str(exc))}")
        return
    _print(report.warnings)
    for r in report.results:
        click.echo(printable(f"{r.name} seed {r.seed}: {r.status}"
                             + (f" -> {r.output}" if r.output and r.status != "failed"
                                else f": {r.error}" if r.error else "")))
