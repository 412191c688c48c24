"""The compiler's commands: compile, validate, decompile, lower, preview, schema, grammar."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from omostc.api import compile_file, load_scene
from omostc.cli.common import print_diagnostics, run_each
from omostc.compiler.bounds import SURROGATE
from omostc.compiler.decompile import decompile
from omostc.diagnostics import Diagnostic, SettingsError, printable
from omostc.files import write_bytes_atomic, write_text_atomic
from omostc.spec.schema import schema_json
from omostc.spec.tables import DEFAULT_HEIGHT, DEFAULT_WIDTH
from omostc.spec.yamlio import dumps_spec, load_spec, schema_ref_for


def _text(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An option recorded in the spec: text the spec can hold (an argument that is not UTF-8
    reaches Python holding lone surrogates, which no YAML file can)."""
    if value is not None and SURROGATE.search(value):
        raise click.BadParameter("not valid text: it holds bytes that are not UTF-8")
    return value


@click.command("compile")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the spec here (one input only).")
@click.option("-O", "--out-dir", type=click.Path(file_okay=False), help="Write <stem>.yaml for each input here.")
@click.option("--partial", is_flag=True, help="Keep the complete calls of a truncated program.")
@click.option("--prompt", callback=_text, help="Record the user's request in the spec's provenance.")
@click.option("--model", callback=_text, help="Record the model that wrote the canvas in the spec's provenance.")
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

    targets, clashes, items = _out_dir_targets(list(inputs), out_dir, quiet)

    def one(item: str) -> None:
        if item in clashes:
            raise SettingsError([Diagnostic("error", clashes[item], file=item)])
        result = compile_file(item, partial=partial, prompt=prompt, model=model)
        print_diagnostics(result.warnings, quiet)
        target = output or targets.get(item)
        text = dumps_spec(result.scene, schema_ref=schema_ref_for(target))
        if target is None:
            click.echo(text, nl=False)
        else:
            write_text_atomic(target, text)
            if not quiet:
                click.echo(printable(f"{item} -> {target}"), err=True)

    run_each(items, one, "inputs")


def _out_dir_targets(inputs: list[str], out_dir: str | None,
                     quiet: bool) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """-O's file for each input (``OUT/<name>.yaml``, the name made safe as ``render`` makes its
    folders), the inputs whose name an earlier input has (the error naming both), and the inputs
    once each (the same file given twice is compiled once)."""
    from omostc.batch.names import Claims, clash_message, identity, input_name

    targets: dict[str, str] = {}
    clashes: dict[str, str] = {}
    once: list[str] = []
    seen: dict[object, str] = {}
    claims = Claims()
    for item in inputs:
        first = seen.setdefault(identity(item), item)
        if first != item or item in once:
            print_diagnostics([Diagnostic("warning", f"the same input as {first}, given before: compiled once",
                                          file=item)], quiet)
            continue
        once.append(item)
        if out_dir:
            name = input_name(item)
            targets[item] = str(Path(out_dir) / f"{name}.yaml")
            other = claims.clash(item, name, [], whole=True)
            if other is not None:
                clashes[item] = clash_message(name, other, targets[item])
    return targets, clashes, once


@click.command()
@click.argument("specs", nargs=-1, required=True)
@click.option("-q", "--quiet", is_flag=True, help="Print failures only.")
def validate(specs: tuple[str, ...], quiet: bool) -> None:
    """Check YAML scene specs against the schema (usable as a pre-commit hook)."""

    def one(item: str) -> None:
        load_spec(item)
        if not quiet:
            click.echo(f"{item}: ok", err=True)

    run_each(list(specs), one, "specs")


@click.command("decompile")
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

    run_each([spec], one, "specs")


def _tokenizer_option(f):
    return click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
                        help="Count tokens with this diffusers model folder's own tokenizer/ "
                             "(default: the offline CLIP tokenizer).")(f)


def _lowered(item: str, partial: bool, model_dir: str | None, *, tokens: bool = True):
    """The IR of a spec or program; with ``tokens``, with the CLIP bags of the model folder's own
    tokenizer, else of the offline one."""
    from omostc.ir.clip.tokenize import TransformersClipTokenizer, default_tokenizer
    from omostc.ir.lowering import lower

    scene, warnings = load_scene(item, partial=partial)
    print_diagnostics(warnings)
    tokenizer = None
    if tokens:
        tokenizer = TransformersClipTokenizer.from_pretrained(model_dir) if model_dir else default_tokenizer()
    ir = lower(scene, tokenizer)
    print_diagnostics(d if d.file else replace(d, file=item) for d in ir.warnings)
    return scene, ir


@click.command("lower")
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

    run_each([file], one, "inputs")


@click.command()
@click.argument("file")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="PNG to write.")
@click.option("--width", type=click.IntRange(64, 8192), help="Image width (default: the spec's, else 896).")
@click.option("--height", type=click.IntRange(64, 8192), help="Image height (default: the spec's, else 1152).")
@click.option("--partial", is_flag=True, help="Keep the complete calls of a truncated program.")
def preview(file: str, output: str, width: int | None, height: int | None, partial: bool) -> None:
    """Draw the layout: the colour sketch at image size, each region outlined and labelled."""

    def one(item: str) -> None:
        from omostc.ir.pictures import layout_png

        scene, ir = _lowered(item, partial, None, tokens=False)
        render = scene.render
        w = width or (render.width if render and render.width else DEFAULT_WIDTH)
        h = height or (render.height if render and render.height else DEFAULT_HEIGHT)
        write_bytes_atomic(output, layout_png(ir, w, h))

    run_each([file], one, "inputs")


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the schema here.")
@click.option("--kind", type=click.Choice(["scene", "profile", "manifest-row", "log-event"]), default="scene",
              show_default=True, help="manifest-row: a line of OUT/manifest.jsonl; log-event: a line of "
              "`omostc render --log json`.")
def schema(output: str | None, kind: str) -> None:
    """Print the JSON Schema of scene specs (or of render profiles, manifest rows, JSON log events)."""
    from omostc.batch.events import log_schema_json, row_schema_json
    from omostc.batch.profile import profile_schema_json

    makers = {"scene": schema_json, "profile": profile_schema_json, "manifest-row": row_schema_json,
              "log-event": log_schema_json}
    text = makers[kind]()
    if output:
        run_each([output], lambda path: write_text_atomic(path, text), "outputs")
    else:
        click.echo(text, nl=False)



@click.command()
@click.option("--format", "fmt", type=click.Choice(["gbnf", "json-schema"]), default="gbnf", show_default=True,
              help="gbnf: the Canvas program grammar (llama.cpp, xgrammar); json-schema: the scene spec, for "
                   "servers that only take JSON schemas.")
def grammar(fmt: str) -> None:
    """Print the grammar of Canvas programs, built from the compiler's own tables."""
    from omostc.compiler.grammar import canvas_gbnf

    click.echo(canvas_gbnf() if fmt == "gbnf" else schema_json(), nl=False)

