"""``generate`` and ``edit``: what ``omostc generate`` and ``omostc edit`` do, as one call each."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omostc.compiler.budget import MIN_MAX_TOKENS
from omostc.diagnostics import Diagnostic, LLMError
from omostc.llm.conversation import (
    CONTEXT_TOKENS,
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
# how a server takes the grammar: the field it reads (server.GRAMMAR_FIELDS), or a JSON schema
GRAMMAR_MODES = ("llama.cpp", "vllm", "vllm-legacy", "sglang", "tabbyapi", "json-schema")
MODEL_KINDS = ("omost", "generic")


@dataclass
class LLMSettings:
    """How to reach a model and sample from it (the flags of generate, edit and chat)."""

    model: str = DEFAULT_MODEL
    base_url: str | None = None  # an OpenAI-compatible endpoint; None: transformers in this process
    api_key: str | None = None
    constrain: bool | None = None  # decode under the Canvas grammar (default: on with --grammar, or unless the
    # name says omost)
    grammar: str | None = None  # how a server takes the grammar (GRAMMAR_MODES); None: asked of the server
    model_kind: str | None = None  # omost or generic (default: from the model's name)
    sampling: SamplingOptions | None = None
    retries: int = 0
    timeout: float | None = None  # seconds for one answer (default: 600 from a server, none for a model run here)
    context: int | None = None  # the model's context in tokens (default: from the server or model, else 8192)
    partial: bool = False  # an answer cut short keeps its complete calls

    @property
    def kind(self) -> str:
        return self.model_kind or ("omost" if "omost" in self.model.lower() else "generic")


def chat_backend(settings: LLMSettings) -> Any:
    """An OpenAI-compatible server client, or a transformers model in this process. Its
    ``constraint`` says what is sent (``describe_constraint``); ``context`` the model's context
    where the server or model config says it."""
    from omostc.llm.local import TransformersChatBackend
    from omostc.llm.server import OpenAIChatBackend

    if settings.constrain is False and settings.grammar:
        raise LLMError(f"--grammar {settings.grammar} sends the grammar; it contradicts --no-constrain")
    explicit = settings.constrain is True or settings.grammar is not None
    constrain = explicit or (settings.constrain is None and "omost" not in settings.model.lower())
    if not settings.base_url:
        return TransformersChatBackend(settings.model, constrain=constrain, timeout=settings.timeout)
    from omostc.llm.probe import ServerInfo, probe

    grammar, note = settings.grammar if constrain else None, ""
    needs_probe = (constrain and grammar is None) or settings.context is None
    info = probe(settings.base_url, settings.model, settings.api_key) if needs_probe else ServerInfo(None, None)
    if constrain and grammar is None:
        grammar = info.kind
        if grammar is None:
            ask = ("pass --grammar " + "|".join(GRAMMAR_MODES) + " (how the server takes the grammar; "
                   "json-schema for Ollama, LM Studio and OpenAI)")
            if settings.constrain:
                raise LLMError(f"--constrain: cannot tell which server answers at {settings.base_url} (llama.cpp "
                               f"answers /props, vLLM /version, SGLang /get_model_info): {ask}, or --no-constrain")
            note = f"not recognised as llama.cpp, vLLM or SGLang; to constrain, {ask}"
    backend = OpenAIChatBackend(base_url=settings.base_url, model=settings.model, api_key=settings.api_key,
                                grammar=grammar, timeout=settings.timeout or DEFAULT_TIMEOUT)
    backend.context = info.context
    backend.constraint_note = note
    return backend


def describe_constraint(backend: Any, max_tokens: int) -> str:
    """One line saying what constrains the answer, as it is sent."""
    from omostc.compiler.budget import server_limits
    from omostc.llm.server import GRAMMAR_FIELDS

    grammar = getattr(backend, "grammar", None)
    if grammar == "json-schema":
        return "constraint: on (the scene spec's JSON schema as `response_format`)"
    if grammar in GRAMMAR_FIELDS:
        field = next(iter(GRAMMAR_FIELDS[grammar]("")))
        limits = getattr(backend, "limits", None) or server_limits(max_tokens)
        return (f"constraint: on (the Canvas grammar as `{field}`, for {grammar}; bounded so any answer fits "
                f"{max_tokens} tokens: at most {limits.regions} regions, {limits.items} detailed descriptions each, "
                f"strings of {limits.string} characters; a larger --max-tokens allows more, --no-constrain lifts it)")
    if getattr(backend, "constrain", False):
        return f"constraint: on (the Canvas grammar, closing the program within {max_tokens} tokens)"
    note = getattr(backend, "constraint_note", "")
    return "constraint: off" + (f" (the server is {note})" if note else "")


def constrained(backend: Any) -> bool:
    return bool(getattr(backend, "constrain", False) or getattr(backend, "grammar", None))


def check_budget(backend: Any, max_tokens: int) -> None:
    """A constrained answer needs ``MIN_MAX_TOKENS``: the grammar's shortest program, with room."""
    if constrained(backend) and max_tokens < MIN_MAX_TOKENS:
        raise LLMError(f"--max-tokens {max_tokens} is too few for a constrained answer: the Canvas grammar needs "
                       f"at least {MIN_MAX_TOKENS} (the shortest program, with room to close it); raise "
                       "--max-tokens, or --no-constrain")


@dataclass
class Answer:
    """A generation and what the caller should know about how it was asked."""

    generation: Generation
    dropped_turns: int  # oldest turns left out to fit the model's context
    max_tokens: int = 0  # the answer's token budget (lowered from --max-tokens to fit the context)
    context: int = CONTEXT_TOKENS  # the model's context, as used

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
    check_budget(backend, sampling.max_tokens)
    context = settings.context or getattr(backend, "context", None) or CONTEXT_TOKENS
    messages, dropped, max_tokens = fit_context(messages, getattr(backend, "count_tokens", estimate_tokens),
                                                context, sampling.max_tokens, settings.kind)
    sampling = SamplingOptions(sampling.temperature, sampling.top_p, max_tokens, sampling.seed)
    generation = generate_scene(backend, messages, retries=settings.retries, prompt=prompt, on_text=on_text,
                                sampling=sampling, partial=settings.partial, **listen)
    return Answer(generation, dropped, max_tokens, context)


def fit_context(messages: list[Message], count: Callable[[str], int], context: int, max_tokens: int,
                kind: str) -> tuple[list[Message], int, int]:
    """The messages, the turns dropped and the answer's token budget, within ``context`` tokens.
    The system prompt, a generic model's worked example (when ``kind`` is generic and it follows
    the system prompt) and the latest canvas are never dropped: when they and ``max_tokens`` do
    not fit, the answer's budget is lowered to what is left."""
    from omostc.llm.conversation import worked_example

    head = 1 + (2 if kind == "generic" and messages[1:3] == worked_example() else 0)
    fixed = messages[:head]
    kept, dropped = trim_conversation([Message("system", "\n".join(m.content for m in fixed)), *messages[head:]],
                                      count, limit=context, reserve=max_tokens)
    kept = fixed + kept[1:]
    used = sum(count(m.content) for m in kept)
    if used + max_tokens > context:
        max_tokens = context - used
        if max_tokens < MIN_MAX_TOKENS:
            raise LLMError(f"the conversation takes about {used} of the model's {context} tokens of context, "
                           f"leaving too few for an answer: give the context the model has (--context), or edit "
                           "a spec without its stored conversation")
    return kept, dropped, max_tokens


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
