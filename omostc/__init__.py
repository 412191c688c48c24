"""omostc: a declarative scene-spec compiler for Omost-style regional prompting.

The pipeline, one module per stage, data flowing one way:
source (find the program) -> parse (Canvas code -> Scene) -> spec/schema/yamlio (scene specs)
-> decompile (Scene -> Canvas code) -> lower (Scene -> IR).
"""

__version__ = "0.1.0"

from omostc.api import check_scene, compile_file, compile_text, load_scene  # noqa: E402
from omostc.compiler.decompile import decompile  # noqa: E402
from omostc.compiler.parse import CompileResult, compile_canvas  # noqa: E402
from omostc.diagnostics import CompileError, Diagnostic, OmostcError, SpecError  # noqa: E402
from omostc.spec.model import Scene  # noqa: E402
from omostc.spec.yamlio import dumps_spec, load_spec, loads_spec  # noqa: E402


def __getattr__(name):
    # The IR pulls numpy; the compiler's entry points stay light until lowering is asked for.
    if name == "lower":
        from omostc.ir.lowering import lower

        return lower
    raise AttributeError(f"module 'omostc' has no attribute {name!r}")


__all__ = [
    "CompileError", "CompileResult", "Diagnostic", "OmostcError", "Scene", "SpecError",
    "check_scene", "compile_canvas", "compile_file", "compile_text", "decompile", "dumps_spec",
    "load_scene", "load_spec", "loads_spec", "lower",
]
