"""The ``omostc`` command: a thin layer over ``omostc.api``.

Every command takes many files, keeps going past a bad one, lists each failure with its
location, and exits 1 if anything failed. Errors never print a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterable

import click

from omostc import __version__
from omostc.api import compile_file, load_scene
from omostc.compiler.decompile import decompile
from omostc.diagnostics import CompileError, Diagnostic, OmostcError
from omostc.files import STDIN, write_bytes_atomic, write_text_atomic
from omostc.spec.schema import schema_json
from omostc.spec.tables import DEFAULT_HEIGHT, DEFAULT_WIDTH
from omostc.spec.yamlio import dumps_spec, load_spec, schema_ref_for


def _print_diagnostics(diagnostics: Iterable[Diagnostic], quiet: bool = False) -> None:
    for d in diagnostics:
        if quiet and d.severity == "warning":
            continue
        click.echo(d.format(), err=True)


def _run_batch(items: list[str], action: Callable[[str], None], what: str) -> None:
    """Run ``action`` on every item; report failures at the end; exit 1 if any failed."""
    failed: list[str] = []
    for item in items:
        try:
            action(item)
        except CompileError as exc:
            _print_diagnostics(exc.diagnostics)
            if exc.truncated:
                click.echo(f"{item}: truncated program", err=True)
            failed.append(item)
        except OSError as exc:
            click.echo(f"{exc.filename or item}: error: {exc.strerror or exc}", err=True)
            failed.append(item)
        except OmostcError as exc:
            diags = getattr(exc, "diagnostics", None)
            if diags:
                _print_diagnostics(diags)
            else:
                click.echo(f"{item}: error: {exc}", err=True)
            failed.append(item)
    if failed:
        if len(items) > 1:
            click.echo(f"\n{len(failed)} of {len(items)} {what} failed:", err=True)
            for item in failed:
                click.echo(f"  {item}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="omostc")
def main() -> None:
    """omostc: compile LLM-written Canvas code into scene specs, and render them."""


@main.command("compile")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the spec here (one input only).")
@click.option("-O", "--out-dir", type=click.Path(file_okay=False), help="Write <stem>.yaml for each input here.")
@click.option("--partial", is_flag=True, help="Keep the complete calls of a truncated program.")
@click.option("--prompt", help="Record the user's request in the spec's provenance.")
@click.option("--model", help="Record the model that wrote the canvas in the spec's provenance.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print warnings.")
def compile_cmd(inputs: tuple[str, ...], output: str | None, out_dir: str | None, partial: bool,
                prompt: str | None, model: str | None, quiet: bool) -> None:
    """Compile Canvas code (an LLM answer, a .py file, or - for stdin) into YAML scene specs."""
    if output and len(inputs) > 1:
        raise click.UsageError("-o/--output takes one input; use -O/--out-dir for several")
    if len(inputs) > 1 and not out_dir:
        raise click.UsageError("several inputs need -O/--out-dir")
    if output and out_dir:
        raise click.UsageError("give -o or -O, not both")

    def one(item: str) -> None:
        result = compile_file(item, partial=partial, prompt=prompt, model=model)
        _print_diagnostics(result.warnings, quiet)
        target = output or (str(Path(out_dir) / f"{Path(item).stem if item != STDIN else 'stdin'}.yaml")
                            if out_dir else None)
        text = dumps_spec(result.scene, schema_ref=schema_ref_for(target))
        if target is None:
            click.echo(text, nl=False)
        else:
            write_text_atomic(target, text)
            if not quiet:
                click.echo(f"{item} -> {target}", err=True)

    _run_batch(list(inputs), one, "inputs")


@main.command()
@click.argument("specs", nargs=-1, required=True)
@click.option("-q", "--quiet", is_flag=True, help="Print failures only.")
def validate(specs: tuple[str, ...], quiet: bool) -> None:
    """Check YAML scene specs against the schema (usable as a pre-commit hook)."""

    def one(item: str) -> None:
        load_spec(item)
        if not quiet:
            click.echo(f"{item}: ok", err=True)

    _run_batch(list(specs), one, "specs")


@main.command("decompile")
@click.argument("spec")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the code here.")
@click.option("--fence", is_flag=True, help="Wrap in a ```python fence, as the models answer.")
def decompile_cmd(spec: str, output: str | None, fence: bool) -> None:
    """Print a scene spec as Canvas code in the style the Omost models write."""

    def one(item: str) -> None:
        scene, _ = load_scene(item)
        code = decompile(scene, fence=fence)
        if output:
            write_text_atomic(output, code if code.endswith("\n") else code + "\n")
        else:
            click.echo(code)

    _run_batch([spec], one, "specs")


def _tokenizer_option(f):
    return click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
                        help="Count tokens with this diffusers model folder's own tokenizer/ "
                             "(default: the offline CLIP tokenizer).")(f)


def _lowered(item: str, partial: bool, model_dir: str | None):
    from omostc.ir.clip.tokenize import TransformersClipTokenizer
    from omostc.ir.lowering import lower

    scene, warnings = load_scene(item, partial=partial)
    _print_diagnostics(warnings)
    tokenizer = TransformersClipTokenizer.from_pretrained(model_dir) if model_dir else None
    ir = lower(scene, tokenizer)
    for message in ir.warnings:
        click.echo(f"{item}: warning: {message}", err=True)
    return scene, ir


@main.command("lower")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print the IR as JSON (the default output).")
@click.option("--ids", is_flag=True, help="Include the token ids in the JSON.")
@click.option("--sketch", type=click.Path(dir_okay=False), help="Write the 90 x 90 colour sketch as a PNG.")
@click.option("--partial", is_flag=True, help="Keep the complete calls of a truncated program.")
@_tokenizer_option
def lower_cmd(file: str, as_json: bool, ids: bool, sketch: str | None, partial: bool, model_dir: str | None) -> None:
    """Lower a spec (or Canvas code) to the IR that renderers execute."""

    from omostc.ir.model import to_json

    def one(item: str) -> None:
        _, ir = _lowered(item, partial, model_dir)
        if sketch:
            from omostc.ir.pictures import sketch_png

            write_bytes_atomic(sketch, sketch_png(ir))
        if as_json or not sketch:
            click.echo(to_json(ir.to_dict(ids=ids)))

    _run_batch([file], one, "inputs")


@main.command()
@click.argument("file")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="PNG to write.")
@click.option("--width", type=click.IntRange(64, 8192), help="Image width (default: the spec's, else 896).")
@click.option("--height", type=click.IntRange(64, 8192), help="Image height (default: the spec's, else 1152).")
@click.option("--partial", is_flag=True, help="Keep the complete calls of a truncated program.")
def preview(file: str, output: str, width: int | None, height: int | None, partial: bool) -> None:
    """Draw the layout: the colour sketch at image size, each region outlined and labelled."""

    def one(item: str) -> None:
        from omostc.ir.pictures import layout_png

        scene, ir = _lowered(item, partial, None)
        render = scene.render
        w = width or (render.width if render and render.width else DEFAULT_WIDTH)
        h = height or (render.height if render and render.height else DEFAULT_HEIGHT)
        write_bytes_atomic(output, layout_png(ir, w, h))

    _run_batch([file], one, "inputs")


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the schema here.")
@click.option("--kind", type=click.Choice(["scene", "profile"]), default="scene", show_default=True)
def schema(output: str | None, kind: str) -> None:
    """Print the JSON Schema of scene specs (or of render profiles)."""
    from omostc.spec.schema import profile_schema_json

    text = schema_json() if kind == "scene" else profile_schema_json()
    if output:
        _run_batch([output], lambda path: write_text_atomic(path, text), "outputs")
    else:
        click.echo(text, nl=False)


def _quiet_libraries(quiet: bool) -> None:
    """Keep diffusers' and transformers' loading chatter out of a quiet run's output."""
    import importlib

    for name in ("transformers", "diffusers"):
        try:
            library = importlib.import_module(name)
        except ImportError:  # an install with only one of the extras
            continue
        if name == "transformers":
            library.utils.logging.set_verbosity_error()
        if quiet:
            library.utils.logging.disable_progress_bar()


@main.command()
@click.argument("specs", nargs=-1)
@click.option("-p", "--profile", "profile_name", help="Render profile: runners/NAME.yaml, a file, or built in "
              "(preview, tiny). Default: preview, or an SDXL profile for --model.")
@click.option("--model", help="SDXL model (hub id, diffusers folder, .safetensors file); implies the sdxl backend.")
@click.option("-o", "--out", "out_dir", default="renders", show_default=True, type=click.Path(file_okay=False),
              help="Images go to OUT/<spec name>/<seed>.png, rows to OUT/manifest.jsonl.")
@click.option("--seed", "seeds", type=click.IntRange(0, 2**63 - 1), multiple=True,
              help="Seed (repeatable); default: the spec's, the profile's, else 12345.")
@click.option("--images", type=click.IntRange(1, 1000), help="Images per spec, seeds counting up from the first.")
@click.option("--width", type=click.IntRange(64, 8192))
@click.option("--height", type=click.IntRange(64, 8192))
@click.option("--steps", type=click.IntRange(1, 1000))
@click.option("--cfg", type=float)
@click.option("--negative-prompt")
@click.option("--sketch-strength", type=click.FloatRange(0.01, 1.0),
              help="Start from the colour sketch, denoising this much (0.95 to 0.99 work well).")
@click.option("--highres-scale", type=click.FloatRange(1.0, 8.0))
@click.option("--highres-steps", type=click.IntRange(1, 1000))
@click.option("--highres-denoise", type=click.FloatRange(0.01, 1.0))
@click.option("--sampler", help="'omost' (Omost's DPM++ 2M Karras, the default) or a diffusers scheduler class name.")
@click.option("--pooled", type=click.Choice(["omost", "projected"]), help="Pooled text embedding (default: Omost's).")
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), help="Default: the profile's; fp16 on a GPU, fp32 on a CPU.")
@click.option("--device", help="cuda, cpu or mps (default: the profile's, else the best there is).")
@click.option("--vae", help="Override the VAE (hub id, folder or single file).")
@click.option("--model-config", help="For a single-file model: a diffusers folder or hub id with its component "
              "configurations (default: SDXL base's, written offline).")
@click.option("--offload", is_flag=True, help="Keep components on the CPU until they run (8 GB cards).")
@click.option("--processor", type=click.Choice(["fast", "reference"]), help="Regional attention: fused, or Omost's literal formula.")
@click.option("--force", is_flag=True, help="Render again what is already rendered.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: one actor per GPU (or --workers CPU workers) holding a loaded pipeline.")
@click.option("--workers", type=click.IntRange(1, 4096), help="Ray actors (default: one per GPU, else 1).")
@click.option("--ray-address", help="A running Ray cluster (default: start a local instance).")
@click.option("--threads", type=click.IntRange(1, 1024), help="CPU threads per renderer (default: torch's, "
              "1 per Ray worker). CPU results are bit-identical between runs with the same count.")
@click.option("--log", "log_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one JSON object per item on stderr, for CI.")
@click.option("--from-png", "from_png", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Re-render an omostc PNG exactly from its embedded spec and settings.")
@click.option("-q", "--quiet", is_flag=True, help="Failures and the summary only.")
def render(specs, profile_name, model, out_dir, seeds, images, width, height, steps, cfg, negative_prompt,
           sketch_strength, highres_scale, highres_steps, highres_denoise, sampler, pooled, dtype, device, vae,
           model_config, offload, processor, force, executor, workers, ray_address, threads, log_format, from_png,
           quiet) -> None:
    """Render scene specs (or Canvas code) in a batch: incremental, resumable, one failure never
    stops the rest."""
    import json as json_module
    from dataclasses import replace

    from omostc.batch.executors import LocalExecutor, RayExecutor, make_backend
    from omostc.batch.profile import load_profile
    from omostc.batch.runner import collect_batch, run_batch

    if not specs and not from_png:
        raise click.UsageError("give spec files, or --from-png images")
    overrides = dict(width=width, height=height, steps=steps, cfg=cfg, negative_prompt=negative_prompt,
                     sketch_strength=sketch_strength, sampler=sampler, pooled=pooled, highres_scale=highres_scale,
                     highres_steps=highres_steps, highres_denoise=highres_denoise)
    try:
        profile = load_profile(profile_name)  # default: preview
        if model:  # a model on the command line: the sdxl backend, the profile's settings otherwise
            profile = replace(profile, name=profile.name if profile_name else "cli", backend="sdxl", model=model)
        profile = replace(profile, dtype=dtype or profile.dtype, device=device or profile.device,
                          vae=vae or profile.vae, model_config=model_config or profile.model_config,
                          offload=offload or profile.offload, processor=processor or profile.processor)
        batch = collect_batch(list(specs), profile, overrides, list(seeds) or None, images, list(from_png))
    except OmostcError as exc:  # a profile that cannot be used: nothing to run
        diagnostics = getattr(exc, "diagnostics", None)
        _print_diagnostics(diagnostics) if diagnostics else click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    profile, items = batch.profile, batch.items
    _print_diagnostics(batch.warnings, quiet or log_format == "json")
    if profile.backend == "sdxl":
        _quiet_libraries(quiet or log_format == "json")

    if executor == "ray":
        runner = RayExecutor(profile, workers=workers, address=ray_address, threads=threads)
    else:
        live = log_format == "text" and not quiet and sys.stderr.isatty()

        def show_step(item, position: int, total: int, step: int, steps: int) -> None:  # one status line
            bar = "#" * (20 * step // steps)
            click.echo(f"\r  [{position}/{total}] {item.name} seed {item.seed} [{bar:<20}] step {step}/{steps}\033[K",
                       err=True, nl=False)

        runner = LocalExecutor(lambda: make_backend(profile, threads), show_step if live else None)

    shown = {d.file for d in batch.warnings if d.severity == "error"}  # printed above, with their context

    def report(result) -> None:
        if log_format == "json":
            click.echo(json_module.dumps(result.row(), ensure_ascii=False), err=True)
        elif result.status == "failed":
            if not (result.seed is None and result.source in shown):
                click.echo(f"{result.source}: error: {result.error}", err=True)
        elif not quiet:
            prefix = "\r" if sys.stderr.isatty() else ""
            click.echo(f"{prefix}{result.name} seed {result.seed}: {result.status} -> {result.output}\033[K"
                       if prefix else f"{result.name} seed {result.seed}: {result.status} -> {result.output}",
                       err=True)

    try:
        results = run_batch(items, runner, out_dir, model_name=profile.model or profile.backend,
                            force=force or bool(from_png), failures=batch.failures, on_result=report)
    except OSError as exc:  # the output folder itself (what was written so far stays, whole)
        click.echo(f"{exc.filename or out_dir}: error: cannot write: {exc.strerror or exc}", err=True)
        sys.exit(1)
    counts = {s: sum(r.status == s for r in results) for s in ("rendered", "skipped", "failed")}
    if log_format == "text":
        click.echo(f"{counts['rendered']} rendered, {counts['skipped']} already rendered, {counts['failed']} failed "
                   f"(profile {profile.name}, {Path(out_dir) / 'manifest.jsonl'})", err=True)
        for r in results:
            if r.status == "failed":
                click.echo(f"  failed: {r.source}" + (f" seed {r.seed}" if r.seed is not None else ""), err=True)
    if counts["failed"]:
        sys.exit(1)


def _llm_options(f):
    for option in reversed([
        click.option("--base-url", envvar="OMOSTC_LLM_URL",
                     help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 (llama.cpp, vLLM, Ollama, "
                          "LM Studio); or $OMOSTC_LLM_URL. Without it the model runs here, with transformers."),
        click.option("--model", "llm_model", envvar="OMOSTC_LLM_MODEL", default="lllyasviel/omost-llama-3-8b-4bits",
                     show_default=True, help="Hub id or folder (transformers), or the name the server knows."),
        click.option("--api-key", envvar="OMOSTC_LLM_API_KEY", help="Bearer token, if the server wants one."),
        click.option("--retries", type=click.IntRange(0, 20), default=0, show_default=True,
                     help="Ask again, with a new seed, when an answer does not compile."),
        click.option("--seed", type=int, help="Sampling seed."),
        click.option("--temperature", type=click.FloatRange(0, 2), default=0.6, show_default=True),
        click.option("--top-p", type=click.FloatRange(0, 1), default=0.9, show_default=True),
        click.option("--max-tokens", type=click.IntRange(16, 32768), default=4096, show_default=True),
        click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the spec here (else stdout)."),
        click.option("--constrain/--no-constrain", default=None,
                     help="Decode under the Canvas grammar, so every answer compiles (default: on for models "
                          "not trained on Omost, whose name lacks 'omost'; needs a server --grammar mode)."),
        click.option("--grammar", "grammar_mode", type=click.Choice(["llama.cpp", "vllm", "json-schema"]),
                     help="How to pass the grammar to a server: llama.cpp's `grammar`, vLLM's `guided_grammar`, or "
                          "the scene spec's JSON Schema as `response_format` (the spec is then turned into code)."),
        click.option("--model-kind", type=click.Choice(["omost", "generic"]), default=None,
                     help="generic: a model not trained on Omost (Qwen, Llama 3.x instruct, ...) gets instructions "
                          "and a worked example (default: omost if the name says so, else generic)."),
        click.option("-q", "--quiet", is_flag=True, help="Do not stream the answer to the terminal."),
    ]):
        f = option(f)
    return f


def _llm_backend(base_url, llm_model, api_key, constrain, grammar_mode):
    from omostc.llm import OpenAIChatBackend, TransformersChatBackend

    if constrain is None:
        constrain = "omost" not in llm_model.lower()
    if base_url:
        return OpenAIChatBackend(base_url=base_url, model=llm_model, api_key=api_key,
                                 grammar=grammar_mode if constrain else None)
    return TransformersChatBackend(llm_model, constrain=constrain)


def _ask(messages, prompt, base_url, llm_model, api_key, retries, seed, temperature, top_p, max_tokens, output, quiet,
         constrain=None, grammar_mode=None):
    from omostc.llm import SamplingOptions, estimate_tokens, generate, trim_conversation

    backend = _llm_backend(base_url, llm_model, api_key, constrain, grammar_mode)
    echo = None if quiet else (lambda text: click.echo(text, err=True, nl=False))
    try:
        messages, dropped = trim_conversation(messages, getattr(backend, "count_tokens", estimate_tokens),
                                              reserve=max_tokens)
        if dropped:
            click.echo(f"warning: the conversation is longer than the model's context; dropped the {dropped} "
                       "oldest turns (the system prompt and the latest canvas are kept)", err=True)
        result = generate(backend, messages, retries=retries, prompt=prompt, on_text=echo,
                          sampling=SamplingOptions(temperature, top_p, max_tokens, seed))
    except CompileError as exc:
        if not quiet:
            click.echo("", err=True)
        _print_diagnostics(exc.diagnostics)
        click.echo(f"the answer{'s' if retries else ''} did not compile"
                   + (f" ({retries + 1} attempts)" if retries else ""), err=True)
        sys.exit(1)
    except OmostcError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if not quiet:
        click.echo("", err=True)
    if result.interrupted:
        click.echo("interrupted: keeping the calls completed so far", err=True)
    _print_diagnostics(result.result.warnings, quiet)
    text = dumps_spec(result.scene, schema_ref=schema_ref_for(output))
    if output:
        write_text_atomic(output, text)
        click.echo(f"-> {output} (attempt {result.attempts})", err=True)
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("prompt")
@_llm_options
def generate(prompt, model_kind, **kw) -> None:
    """Ask an LLM for a scene: prompt -> Canvas code -> a compiled, validated spec."""
    from omostc.llm import new_conversation

    _ask(new_conversation(prompt, _model_kind(model_kind, kw["llm_model"])), prompt, **kw)


def _model_kind(kind: str | None, model: str) -> str:
    return kind or ("omost" if "omost" in model.lower() else "generic")


@main.command()
@click.argument("spec")
@click.argument("request")
@_llm_options
def edit(spec, request, model_kind, **kw) -> None:
    """Ask an LLM to change a scene ("change the dragon to a dinosaur")."""
    from omostc.llm import edit_conversation

    try:
        scene, _ = load_scene(spec)
    except OmostcError as exc:
        _print_diagnostics(getattr(exc, "diagnostics", None) or [])
        sys.exit(1)
    _ask(edit_conversation(scene, request, _model_kind(model_kind, kw["llm_model"])), request, **kw)


CHAT_HELP = """Type a request; the model answers with a canvas, compiled as it arrives.
  /retry            ask the last request again, with a new seed
  /undo             forget the last request and its answer
  /edit TEXT        replace the last request with TEXT and ask it
  /save [FILE]      save the current scene (default: the --save file)
  /render [PROFILE] render the current scene (default profile: preview)
  /help, /quit"""


@main.command()
@_llm_options
@click.option("--save", "save_path", default="chat.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="Where each compiled scene is saved.")
def chat(base_url, llm_model, api_key, retries, seed, temperature, top_p, max_tokens, output, quiet, save_path,
         constrain, grammar_mode, model_kind):
    """An interactive session: stream the model's canvas, compile each answer, save, render."""
    from omostc.llm import ChatSession, Message, SamplingOptions, system_message, worked_example

    backend = _llm_backend(base_url, llm_model, api_key, constrain, grammar_mode)
    kind = _model_kind(model_kind, llm_model)
    session = ChatSession(backend, SamplingOptions(temperature, top_p, max_tokens, seed),
                          messages=[Message("system", system_message(kind)),
                                    *(worked_example() if kind == "generic" else [])])
    target = output or save_path
    echo = None if quiet else (lambda text: click.echo(text, nl=False))
    click.echo(CHAT_HELP)

    def save(path: str) -> None:
        if session.scene is None:
            click.echo("no scene yet")
            return
        write_text_atomic(path, dumps_spec(session.scene, schema_ref=schema_ref_for(path)))
        click.echo(f"saved {path}")

    def answer(action) -> None:
        try:
            result = action()
        except CompileError as exc:
            click.echo("")
            _print_diagnostics(exc.diagnostics)
            click.echo("the answer did not compile: /retry, /edit or /undo")
            return
        except OmostcError as exc:
            click.echo(f"error: {exc}")
            return
        click.echo("")
        _print_diagnostics(result.result.warnings)
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
            click.echo("undone" if session.undo() else "nothing to undo")
        elif command == "/retry":
            answer(lambda: session.retry(echo))
        elif command == "/edit":
            answer(lambda text=rest: session.edit_last(text, echo)) if rest else click.echo("usage: /edit TEXT")
        elif command == "/save":
            save(rest or target)
        elif command == "/render":
            if session.scene is None:
                click.echo("no scene yet")
                continue
            save(target)
            ctx = click.get_current_context()
            try:
                ctx.invoke(render, specs=(target,), profile_name=rest or None)
            except SystemExit:
                pass
        elif command.startswith("/"):
            click.echo(f"unknown command {command}; /help lists them")
        else:
            answer(lambda text=line: session.ask(text, echo))


@main.command()
@click.option("--format", "fmt", type=click.Choice(["gbnf", "json-schema"]), default="gbnf", show_default=True,
              help="gbnf: the Canvas program grammar (llama.cpp, xgrammar); json-schema: the scene spec, for "
                   "servers that only take JSON schemas.")
def grammar(fmt: str) -> None:
    """Print the grammar of Canvas programs, built from the compiler's own tables."""
    from omostc.compiler.grammar import canvas_gbnf

    click.echo(canvas_gbnf() if fmt == "gbnf" else schema_json(), nl=False)


@main.group()
def dev() -> None:
    """Developer tools."""


@dev.command("tiny-llama")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True)
def tiny_llama(folder: str, seed: int) -> None:
    """Write a random-weight 0.1M-parameter Llama with a chat template, for tests of the LLM front."""
    from omostc.dev.tiny_llama import build_tiny_llama

    _quiet_libraries(True)
    click.echo(str(build_tiny_llama(folder, seed=seed)))


@dev.command("tiny-sdxl")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.Choice(["tiny", "small"]), default="tiny", show_default=True,
              help="tiny: seconds per render on a CPU; small: SDXL's block layout, for benchmarks.")
def tiny_sdxl(folder: str, seed: int, size: str) -> None:
    """Write a random-weight SDXL-shaped model (diffusers layout) for tests and benchmarks."""
    from omostc.backends.sdxl.tiny import build_tiny_sdxl

    _quiet_libraries(True)
    click.echo(str(build_tiny_sdxl(folder, seed=seed, size=size)))


@dev.command("single-file")
@click.argument("model")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp16", show_default=True)
def single_file(model: str, output: str, dtype: str) -> None:
    """Write an SDXL model (hub id, diffusers folder, builtin:tiny-sdxl) as one .safetensors
    checkpoint in the original layout, the one A1111, ComfyUI and from_single_file read."""
    from omostc.backends.sdxl.models import export_single_file

    _quiet_libraries(True)
    try:
        click.echo(str(export_single_file(model, output, dtype=dtype)))
    except OmostcError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
