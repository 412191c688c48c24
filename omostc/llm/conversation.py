"""Omost's conversations: the system prompt the models were trained with (byte for byte), then
alternating user and assistant turns; an edit is a new user turn after the scene's last assistant
turn (its stored conversation, or its decompiled Canvas code in a python fence). Conversations
longer than the model's context drop their oldest turns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from omostc.compiler.decompile import decompile
from omostc.diagnostics import LLMError
from omostc.spec.model import Message, Scene
from omostc.spec.tables import system_prompt

TEMPERATURE, TOP_P, MAX_NEW_TOKENS = 0.6, 0.9, 4096  # Omost's app defaults (OMOST.md section 8)
DEFAULT_TIMEOUT = 600.0  # seconds for a whole request to a server
MAX_TIMEOUT = 7 * 24 * 3600.0  # a longer one is taken as this (timers and sockets take no infinite timeout)


GENERIC_INSTRUCTIONS = (
    "\n\nAnswer every request with one complete python code block in exactly this form: "
    "`canvas = Canvas()`, then one `canvas.set_global_description(...)` call, then one "
    "`canvas.add_local_description(...)` call per part of the image, every argument given by keyword "
    "with a literal value, as in the example. Write nothing else."
)


def system_message(model_kind: str = "omost") -> str:
    """Omost's system prompt; for models not trained on it, plus instructions (a worked example
    follows as the first exchange, see ``new_conversation``)."""
    if model_kind == "omost":
        return system_prompt()
    if model_kind == "generic":
        return system_prompt() + GENERIC_INSTRUCTIONS
    raise LLMError(f"model kind must be 'omost' or 'generic', not {model_kind!r}")


def worked_example() -> list[Message]:
    """A real exchange with the Omost model (OMOST.md's transcript): a request and its canvas."""
    return list(_worked_example())


@lru_cache(maxsize=1)
def _worked_example() -> tuple[Message, Message]:
    from importlib import resources

    folder = resources.files("omostc.data")
    return (Message("user", folder.joinpath("example_user.md").read_text("utf-8").strip()),
            Message("assistant", folder.joinpath("example_assistant.md").read_text("utf-8").strip()))


def new_conversation(prompt: str, model_kind: str = "omost") -> list[Message]:
    example = worked_example() if model_kind == "generic" else []
    return [Message("system", system_message(model_kind)), *example, Message("user", prompt)]


def hand_edited(scene: Scene) -> bool:
    """Whether the scene is no longer what its stored conversation's last answer compiles to (it
    was edited by hand since): its canvas, not the stored answer, is then the model's last turn."""
    stored = scene.provenance.conversation if scene.provenance and scene.provenance.conversation else None
    last = next((m.content for m in reversed(stored or []) if m.role == "assistant"), None)
    if last is None:
        return False
    from omostc.compiler.parse import compile_canvas
    from omostc.diagnostics import CompileError

    for partial in (False, True):  # an answer cut short (Ctrl-C) was compiled keeping its complete calls
        try:
            answered = compile_canvas(last, partial=partial).scene
        except CompileError:
            continue
        if (answered.global_description, answered.regions) == (scene.global_description, scene.regions):
            return False
    return True


def edit_conversation(scene: Scene, request: str, model_kind: str = "omost") -> list[Message]:
    """The scene's stored conversation, else its decompiled canvas as the last assistant turn,
    followed by the edit request. When the scene was edited by hand since its last answer
    (``hand_edited``), its decompiled canvas replaces that answer."""
    stored = scene.provenance.conversation if scene.provenance and scene.provenance.conversation else None
    head = [Message("system", system_message(model_kind)), *(worked_example() if model_kind == "generic" else [])]
    if stored:
        turns = list(stored)
        if turns[0].role != "system":
            turns = head + turns
        if hand_edited(scene):
            while turns and turns[-1].role != "assistant":
                turns.pop()
            turns[-1] = Message("assistant", decompile(scene, fence=True))
    else:
        prompt = scene.provenance.prompt if scene.provenance and scene.provenance.prompt else None
        turns = list(head)
        if prompt:
            turns.append(Message("user", prompt))
        turns.append(Message("assistant", decompile(scene, fence=True)))
    if turns[-1].role != "assistant":
        turns.append(Message("assistant", decompile(scene, fence=True)))
    return turns + [Message("user", request)]


@dataclass
class SamplingOptions:
    temperature: float = TEMPERATURE
    top_p: float = TOP_P
    max_tokens: int = MAX_NEW_TOKENS
    seed: int | None = None


CONTEXT_TOKENS = 8192  # the Omost models' context


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper estimate for servers whose tokenizer we do not have."""
    return len(text) // 3 + 1


def trim_conversation(messages: list[Message], count: Callable[[str], int] = estimate_tokens, *,
                      limit: int = CONTEXT_TOKENS, reserve: int = MAX_NEW_TOKENS) -> tuple[list[Message], int]:
    """Drop the oldest turns until the conversation and ``reserve`` answer tokens fit in
    ``limit``, always keeping the system prompt, the latest canvas (the last assistant turn) and
    what follows it. The kept history starts with a user turn where it can. Returns the
    messages and how many turns were dropped."""
    system = messages[:1] if messages and messages[0].role == "system" else []
    rest = messages[len(system):]
    budget = limit - reserve - sum(count(m.content) for m in system)
    sizes = [count(m.content) for m in rest]
    latest = max((i for i, m in enumerate(rest) if m.role == "assistant"), default=len(rest) - 1)
    start = 0
    while start < latest and sum(sizes[start:]) > budget:
        start += 1
        while start < latest and rest[start].role != "user":
            start += 1
    return system + rest[start:], start
