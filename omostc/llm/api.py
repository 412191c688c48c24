"""``generate`` and ``edit``: what ``omostc generate`` and ``omostc edit`` do, as one call each."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omostc.diagnostics import Diagnostic
from omostc.llm.conversation import (
    DEFAULT_TIMEOUT,
    SamplingOptions,
    edit_conversation,
    estimate_tokens,
    new_conversation,
    trim_conversation,
)
from omostc.llm.generation import Generation, generate_scene
from omostc.spec.model import Message, Scene

DEFAULT_MODEL = "lllyasviel/omost-llama-3-8b-4bits"
GRAMMAR_MODES = ("llama.cpp", "vllm", "json-schema")
MODEL_KINDS = ("omost", "generic")


@dataclass
class LLMSettings:
    """How to reach a model and sample from it (the flags of generate, edit and chat)."""

    model: str = DEFAULT_MODEL
    base_url: str | None = None  # an OpenAI-compatible endpoint; None: transformers in this process
    api_key: str | None = None
    constrain: bool | None = None  # decode under the Canvas grammar (default: on unless the name says omost)
    grammar: str | None = None  # how a server takes the grammar: llama.cpp, vllm or json-schema
    model_kind: str | None = None  # omost or generic (default: from the model's name)
    sampling: SamplingOptions | None = None
    retries: int = 0
    timeout: float | None = None  # seconds for one answer (default: 600 from a server, none for a model run here)

    @property
    def kind(self) -> str:
        return self.model_kind or ("omost" if "omost" in self.model.lower() else "generic")


def chat_backend(settings: LLMSettings) -> Any:
    """An OpenAI-compatible server client, or a transformers model in this process."""
    from omostc.llm.local import TransformersChatBackend
    from omostc.llm.server import OpenAIChatBackend

    constrain = settings.constrain if settings.constrain is not None else "omost" not in settings.model.lower()
    if settings.base_url:
        return OpenAIChatBackend(base_url=settings.base_url, model=settings.model, api_key=settings.api_key,
                                 grammar=settings.grammar if constrain else None,
                                 timeout=settings.timeout or DEFAULT_TIMEOUT)
    return TransformersChatBackend(settings.model, constrain=constrain, timeout=settings.timeout)


@dataclass
class Answer:
    """A generation and what the caller should know about how it was asked."""

    generation: Generation
    dropped_turns: int  # oldest turns left out to fit the model's context

    @property
    def scene(self) -> Scene:
        return self.generation.scene

    @property
    def warnings(self) -> list[Diagnostic]:
        return self.generation.result.warnings


def _ask(messages: list[Message], prompt: str, settings: LLMSettings, backend: Any,
         on_text: Callable[[str], None] | None, listen: dict[str, Any]) -> Answer:
    backend = backend or chat_backend(settings)
    sampling = settings.sampling or SamplingOptions()
    messages, dropped = trim_conversation(messages, getattr(backend, "count_tokens", estimate_tokens),
                                          reserve=sampling.max_tokens)
    generation = generate_scene(backend, messages, retries=settings.retries, prompt=prompt, on_text=on_text,
                                sampling=sampling, **listen)
    return Answer(generation, dropped)


def generate(prompt: str, settings: LLMSettings | None = None, *, backend: Any = None,
             on_text: Callable[[str], None] | None = None, **listen: Any) -> Answer:
    """Ask a model for a scene: prompt -> Canvas code -> a compiled, validated scene. Raises
    CompileError (the last answer's, located) when no answer compiles, LLMError when the model
    or server cannot answer. ``listen``: ``on_attempt`` and ``on_failure`` of ``generate_scene``."""
    settings = settings or LLMSettings()
    return _ask(new_conversation(prompt, settings.kind), prompt, settings, backend, on_text, listen)


def edit(spec: Scene | str | os.PathLike, request: str, settings: LLMSettings | None = None, *, backend: Any = None,
         on_text: Callable[[str], None] | None = None, **listen: Any) -> Answer:
    """Ask a model to change a scene (a Scene, or a spec or Canvas file): its conversation so far
    (with its current canvas as the last answer, when it was edited by hand since), then the request."""
    from omostc.api import load_scene

    settings = settings or LLMSettings()
    scene = spec if isinstance(spec, Scene) else load_scene(spec)[0]
    return _ask(edit_conversation(scene, request, settings.kind), request, settings, backend, on_text, listen)
