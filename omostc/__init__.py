"""omostc: a declarative scene-spec compiler for Omost-style regional prompting.

The pipeline, one package per stage, data flowing one way:
``compiler`` (LLM answer -> Canvas program -> Scene, and back) -> ``spec`` (the scene spec: model,
JSON Schema, YAML) -> ``ir`` (Scene -> backend-neutral IR: layers, boxes, masks, sketch) ->
``backends`` (IR -> images, behind one interface and a registry) -> ``batch`` (profiles, runner,
executors, PNG provenance); ``llm`` writes and edits scenes; ``cli`` is the command line over
the API re-exported here.
"""

__version__ = "0.1.0"

from omostc.api import check_scene, compile_file, compile_text, load_scene  # noqa: E402
from omostc.compiler.decompile import decompile  # noqa: E402
from omostc.compiler.parse import CompileResult, compile_canvas  # noqa: E402
from omostc.diagnostics import (  # noqa: E402
    CompileError,
    Diagnostic,
    InputError,
    LLMError,
    ModelError,
    OmostcError,
    ProvenanceError,
    RenderError,
    SettingsError,
    SpecError,
)
from omostc.spec.model import Scene  # noqa: E402
from omostc.spec.yamlio import dumps_spec, load_spec, loads_spec  # noqa: E402

# Loaded on first use: the IR pulls numpy, the batch runner and the LLM front more; compiling stays light.
_LAZY = {
    "lower": ("omostc.ir.lowering", "lower"),
    "render_batch": ("omostc.batch.api", "render_batch"),
    "BatchReport": ("omostc.batch.api", "BatchReport"),
    "RenderOptions": ("omostc.spec.render", "RenderOptions"),
    "generate": ("omostc.llm.api", "generate"),
    "edit": ("omostc.llm.api", "edit"),
    "LLMSettings": ("omostc.llm.api", "LLMSettings"),
    "ChatSession": ("omostc.llm.chat", "ChatSession"),
    "open_session": ("omostc.llm.chat", "open_session"),
}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'omostc' has no attribute {name!r}")


__all__ = [
    "BatchReport", "ChatSession", "CompileError", "CompileResult", "Diagnostic", "InputError", "LLMError",
    "LLMSettings", "ModelError", "OmostcError", "ProvenanceError", "RenderError", "RenderOptions", "Scene",
    "SettingsError", "SpecError", "check_scene", "compile_canvas", "compile_file", "compile_text", "decompile",
    "dumps_spec", "edit", "generate", "load_scene", "load_spec", "loads_spec", "lower", "open_session",
    "render_batch",
]
