"""Ask a model for a canvas until an answer compiles; the scene keeps its conversation."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from omostc.compiler.decompile import decompile
from omostc.compiler.parse import CompileResult, compile_canvas
from omostc.diagnostics import CompileError, Diagnostic, LLMError
from omostc.llm.conversation import SamplingOptions, system_message, worked_example
from omostc.spec.model import Message, Provenance, Scene


@dataclass
class Generation:
    scene: Scene
    answer: str
    result: CompileResult
    attempts: int
    errors: list[CompileError] = field(default_factory=list)  # of the answers that did not compile
    interrupted: bool = False  # Ctrl-C: the answer is what had been written, complete calls kept


def generate_scene(backend, messages: list[Message], *, retries: int = 0, sampling: SamplingOptions | None = None,
                   on_text: Callable[[str], None] | None = None, prompt: str | None = None,
                   on_attempt: Callable[[int, int], None] | None = None,
                   on_failure: Callable[[int, int, CompileError], None] | None = None,
                   partial: bool = False) -> Generation:
    """Ask for a canvas until an answer compiles (``retries`` more times, each with a new seed).

    ``on_attempt(number, attempts)`` is called before each attempt, ``on_failure(number, attempts,
    error)`` after each answer that did not compile and is followed by another attempt.

    Raises the last CompileError when no answer compiles; an LLMError when the model or server
    fails, with the text it had sent in the error's ``answer`` (``compile_canvas(exc.answer,
    partial=True)`` keeps its complete calls). Ctrl-C stops the answer where it is (``interrupted``).
    With ``partial``, an answer cut short (the token limit) keeps its complete calls, with a warning.
    The scene records its provenance: the prompt, the model and the whole conversation, answer included."""
    sampling = sampling or SamplingOptions()
    rng = random.Random(sampling.seed)
    errors: list[CompileError] = []
    for attempt in range(retries + 1):
        seed = sampling.seed if attempt == 0 else rng.randrange(2**31)
        if on_attempt is not None:
            on_attempt(attempt + 1, retries + 1)
        parts, interrupted = [], False
        stream = backend.stream(messages, SamplingOptions(sampling.temperature, sampling.top_p, sampling.max_tokens,
                                                          seed))
        try:
            for text in stream:
                parts.append(text)
                if on_text is not None:
                    on_text(text)
        except KeyboardInterrupt:  # stop generating, keep what was written
            interrupted = True
        except LLMError as exc:  # a server or model that failed partway: the answer so far goes with the error
            exc.answer = "".join(parts)
            raise
        finally:
            stream.close()
        answer = "".join(parts)
        try:
            if getattr(backend, "grammar", None) == "json-schema":  # a scene spec as JSON, kept as Canvas code
                result = _scene_from_json(answer, f"<answer {attempt + 1}>")
                answer = decompile(result.scene, fence=True)
            else:
                result = compile_canvas(answer, file=f"<answer {attempt + 1}>", partial=interrupted or partial)
        except CompileError as exc:
            exc.answer = answer  # the text that did not compile, for whoever keeps the conversation
            exc.interrupted = interrupted
            errors.append(exc)
            if interrupted:
                raise
            if on_failure is not None and attempt < retries:
                on_failure(attempt + 1, retries + 1, exc)
            continue
        if interrupted:  # cut by Ctrl-C, not by the token limit the truncation warning guesses
            result.warnings = [w for w in result.warnings if "truncated" not in w.message]
        where = getattr(backend, "base_url", None) or backend.model
        result.warnings.extend(Diagnostic("warning", w, file=where) for w in getattr(backend, "warnings", []))
        # Stored without the system prompt and worked example (constants, restored on edits). The
        # example is there only under the generic system prompt: an Omost model's conversation
        # that starts with the same exchange keeps it.
        body = [m for m in messages if m.role != "system"]
        generic = any(m.role == "system" and m.content == system_message("generic") for m in messages)
        if generic and body[:2] == worked_example():
            body = body[2:]
        conversation = [*body, Message("assistant", answer)]
        result.scene.provenance = Provenance(prompt=prompt or _last_user(messages), model=backend.model,
                                             conversation=conversation)
        return Generation(result.scene, answer, result, attempt + 1, errors, interrupted)
    raise errors[-1]


def _scene_from_json(answer: str, file: str) -> CompileResult:
    from omostc.diagnostics import SpecError
    from omostc.spec.yamlio import loads_spec

    try:
        return CompileResult(scene=loads_spec(answer, file=file))
    except SpecError as exc:
        raise CompileError(exc.diagnostics) from None


def _last_user(messages: list[Message]) -> str | None:
    return next((m.content for m in reversed(messages) if m.role == "user"), None)
