"""The chat view: one turn of ``omostc chat``'s conversation per request, streamed as server-sent
events. The page holds the conversation (the server keeps none): it sends the turns so far and
the new request, and gets the tokens, then the compiled scene and the conversation to keep."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from omostc.diagnostics import CompileError, Diagnostic, LLMError, OmostcError, printable
from omostc.llm.api import LLMSettings, chat_backend
from omostc.llm.chat import ChatSession, open_session
from omostc.llm.conversation import edit_conversation
from omostc.serve.documents import canonical_yaml, diagnostics_json
from omostc.serve.layout import layout_of
from omostc.spec.model import Message, Provenance, Scene, scene_to_dict

MAX_TURNS = 200  # messages a request may carry
ROLES = ("user", "assistant")


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def parse_messages(raw: Any) -> list[Message]:
    """The page's conversation, checked: a list of {role: user|assistant, content: text}."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_TURNS:
        raise ValueError(f"messages must be a list of at most {MAX_TURNS} turns")
    out = []
    for m in raw:
        if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
            raise ValueError("each message must be {role: 'user' or 'assistant', content: text}")
        out.append(Message(m["role"], m["content"]))
    return out


class ChatFront:
    """The model the server's chat talks to (made once, on the first request: a model run here
    loads once), with the settings of ``omostc serve``'s flags, those of ``omostc chat``."""

    def __init__(self, settings: LLMSettings, backend: object | None = None):
        self.settings = settings
        self._backend = backend
        self._lock = threading.Lock()  # one answer at a time: a model run here is not shared

    def session(self) -> ChatSession:
        if self._backend is None:
            self._backend = chat_backend(self.settings)
        return open_session(self.settings, self._backend)

    def turn(self, messages: list[Message], text: str, scene: Scene | None, seed: int | None,
             on_text, target: Path | None) -> tuple[str, dict[str, Any]]:
        """Ask one question; the event that ends the stream, and its data."""
        with self._lock:
            try:
                session = self.session()
            except OmostcError as exc:
                return "error", _error(exc, None, messages)
            fixed = session.messages  # the system prompt (and, for generic models, the worked example)
            history = self.history(fixed, messages, text, scene)
            session.messages = [*fixed, *history]
            asked = [*history, Message("user", text)]
            try:
                generation = session.ask(text, on_text, seed=seed)
            except (CompileError, LLMError) as exc:
                kept = [*asked, Message("assistant", exc.answer)] if exc.answer else history
                return "error", _error(exc, exc.answer, kept)
            except OmostcError as exc:
                return "error", _error(exc, None, history)
            except Exception as exc:  # a model library's own failure: reported, the server goes on
                return "error", {"message": printable(f"the model failed: {exc}"), "diagnostics": [],
                                 "answer": None, "messages": _turns(history)}
        # the page keeps every turn, and so does the scene, even those the model's context left out
        conversation = [*asked, Message("assistant", generation.answer)]
        result = generation.scene
        result.provenance = replace(result.provenance or Provenance(), conversation=conversation)
        warnings = list(generation.result.warnings)
        unseen = len(fixed) + len(conversation) - len(session.messages)
        if unseen > 0:
            warnings.append(Diagnostic("warning", f"the conversation is longer than the model's context: it saw "
                                       f"the latest turns only ({unseen} oldest left out; the spec keeps them all)",
                                       file=None))
        return "done", {"answer": generation.answer, "messages": _turns(conversation),
                        "yaml": canonical_yaml(result, target), "scene": scene_to_dict(result),
                        "layout": layout_of(result), "diagnostics": diagnostics_json(warnings)}

    def history(self, fixed: list[Message], messages: list[Message], text: str, scene: Scene | None) -> list[Message]:
        """The turns before this request, as the page holds them. From a scene (with the page's turns,
        else its stored ones), as ``omostc edit`` builds them: its canvas as the last answer when it
        was edited since (a dragged box reaches the model), its prompt and canvas when it has no turns."""
        if scene is None:
            return list(messages)
        stored = messages or (scene.provenance.conversation if scene.provenance else None) or []
        with_turns = replace(scene, provenance=replace(scene.provenance or Provenance(),
                                                       conversation=list(stored) or None))
        turns = edit_conversation(with_turns, text, self.settings.kind)[:-1]
        return turns[len(fixed):] if turns[:len(fixed)] == fixed else [m for m in turns if m.role != "system"]

    async def stream(self, messages: list[Message], text: str, scene: Scene | None, retry: bool,
                     seed: int | None, target: Path | None) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()

        def push(item: tuple[str, dict[str, Any]] | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the server stopped while the model was answering: nobody listens
                pass

        def work() -> None:
            try:
                chosen = random.randrange(2**31) if retry and seed is None else seed
                push(self.turn(messages, text, scene, chosen, lambda t: push(("token", {"text": t})), target))
            finally:
                push(None)

        threading.Thread(target=work, daemon=True, name="omostc-chat").start()
        while (item := await queue.get()) is not None:
            yield sse(*item)


def _turns(messages: list[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _error(exc: OmostcError, answer: str | None, messages: list[Message]) -> dict[str, Any]:
    interrupted = isinstance(exc, CompileError) and exc.interrupted
    return {"message": ("the answer did not compile: " if isinstance(exc, CompileError) and answer else "")
            + exc.summary() + (" (interrupted)" if interrupted else ""),
            "diagnostics": diagnostics_json(exc.diagnostics), "answer": answer or None,
            "messages": _turns(messages)}
