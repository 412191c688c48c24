"""The Python API the command line wraps: every command is one call here.

Compiling lives here; ``render_batch`` (``omostc.batch.api``), ``generate`` and ``edit``
(``omostc.llm.api``) and ``ChatSession`` (``omostc.llm.chat``) are re-exported by ``omostc``,
loaded on first use so that compiling never imports a model library.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from omostc.compiler.parse import CompileResult, compile_canvas
from omostc.diagnostics import CompileError, Diagnostic, InputError, SpecError
from omostc.files import read_text
from omostc.spec.model import Provenance, Scene, scene_to_dict
from omostc.spec.yamlio import load_spec, loads_spec, validate_data

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def is_spec_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in SPEC_SUFFIXES


def compile_text(text: str, *, file: str = "<input>", partial: bool = False, source: str | None = None,
                 prompt: str | None = None, model: str | None = None) -> CompileResult:
    """Compile Canvas code (or an LLM answer holding it) and check the result against the schema.

    ``source``, ``prompt`` and ``model``, when given, are recorded as the scene's provenance.
    """
    result = compile_canvas(text, file=file, partial=partial)
    if any(v is not None for v in (source, prompt, model)):
        result.scene.provenance = Provenance(source=source, prompt=prompt, model=model)
    check_scene(result.scene, file=file)
    return result


def compile_file(path: str | os.PathLike, *, partial: bool = False, prompt: str | None = None,
                 model: str | None = None) -> CompileResult:
    name = str(path)
    try:
        text = read_text(path)
    except InputError as exc:
        raise CompileError(exc.diagnostics) from None
    return compile_text(text, file=name, partial=partial, source=None if name == "-" else name,
                        prompt=prompt, model=model)


CODE_SUFFIXES = (".py", ".md", ".txt", ".markdown")
_SPEC_START = re.compile(r"\A(?:[ \t]*(?:#[^\n]*)?\n)*(?:version|global|regions):", re.MULTILINE)


def load_scene(path: str | os.PathLike, *, partial: bool = False) -> tuple[Scene, list[Diagnostic]]:
    """A scene from a YAML/JSON spec or from Canvas code, chosen by the file's suffix; an input
    without one (``-``, a pipe) is a spec when it starts like one (``version:``, after comments)."""
    if is_spec_path(path):
        return load_spec(path), []
    if Path(path).suffix.lower() not in CODE_SUFFIXES:
        name = str(path)
        try:
            text = read_text(path)
        except InputError as exc:
            raise CompileError(exc.diagnostics) from None
        if _SPEC_START.match(text):
            return loads_spec(text, file=name), []
        result = compile_text(text, file=name, partial=partial, source=None if name == "-" else name)
        return result.scene, result.warnings
    result = compile_file(path, partial=partial)
    return result.scene, result.warnings


def check_scene(scene: Scene, *, file: str = "<scene>") -> None:
    """Raise SpecError if a scene built in code breaks the schema (a bug, or a bad hand edit)."""
    problems = validate_data(scene_to_dict(scene))
    if problems:
        raise SpecError([Diagnostic("error", message, file=file) for message, _, _ in problems])
