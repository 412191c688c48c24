"""The state of an interactive session, usable without a terminal: ask, retry, undo, edit."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from omostc.diagnostics import CompileError, LLMError
from omostc.llm.api import LLMSettings, fit_context
from omostc.llm.conversation import CONTEXT_TOKENS, SamplingOptions, estimate_tokens
from omostc.llm.generation import Generation, generate_scene
from omostc.spec.model import Message, Scene
from omostc.spec.tables import system_prompt


@dataclass
class ChatSession:
    """The state of ``omostc chat``: the conversation, the scene of each answer that compiled,
    and the operations a person uses (ask, retry, undo, edit the last input)."""

    backend: object
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    messages: list[Message] = field(default_factory=lambda: [Message("system", system_prompt())])
    scenes: list[Scene | None] = field(default_factory=list)  # one per assistant turn
    context: int = CONTEXT_TOKENS  # the model's context in tokens
    partial: bool = False  # an answer cut short keeps its complete calls

    def __post_init__(self):
        self._fixed = len(self.messages)  # the system prompt (and a worked example): never undone
        self._unanswered: str | None = None  # a request the server failed to answer at all: retried, not kept

    @property
    def scene(self) -> Scene | None:
        return next((s for s in reversed(self.scenes) if s is not None), None)

    def ask(self, text: str, on_text: Callable[[str], None] | None = None, seed: int | None = None) -> Generation:
        self._unanswered = None
        messages, _, max_tokens = fit_context([*self.messages, Message("user", text)],
                                              getattr(self.backend, "count_tokens", estimate_tokens),
                                              self.context, self.sampling.max_tokens, "generic")
        sampling = SamplingOptions(self.sampling.temperature, self.sampling.top_p, max_tokens,
                                   self.sampling.seed if seed is None else seed)
        try:
            result = generate_scene(self.backend, messages, sampling=sampling, on_text=on_text, prompt=text,
                                    partial=self.partial)
        except (CompileError, LLMError) as exc:
            if not (exc.answer or "").strip():  # no answer at all (a server error, Ctrl-C before the first
                self._unanswered = text        # token): the conversation stays as it was, /retry asks again
                raise
            # keep the turn and what was answered, so it can be retried, undone or edited
            self.messages = [*messages, Message("assistant", exc.answer or "")]
            self.scenes.append(None)
            raise
        self.messages = [*messages, Message("assistant", result.answer)]
        self.scenes.append(result.scene)
        return result

    def undo(self) -> bool:
        """Forget the last question and its answer."""
        if self._unanswered is not None:
            self._unanswered = None
            return True
        if len(self.messages) < self._fixed + 2:
            return False
        self.messages = self.messages[:-2]
        self.scenes.pop()
        return True

    def last_input(self) -> str | None:
        if self._unanswered is not None:
            return self._unanswered
        return next((m.content for m in reversed(self.messages) if m.role == "user"), None)

    def retry(self, on_text=None) -> Generation:
        """Ask the last question again, with a new seed."""
        text = self.last_input()
        if text is None or not self.undo():
            raise LLMError("nothing to retry yet")
        return self.ask(text, on_text, seed=random.randrange(2**31))

    def edit_last(self, text: str, on_text=None) -> Generation:
        """Replace the last question and ask it."""
        if not self.undo():
            raise LLMError("nothing to edit yet")
        return self.ask(text, on_text)


def open_session(settings: LLMSettings, backend: object | None = None) -> ChatSession:
    """A new session with a model: the system prompt (and, for generic models, the worked example)."""
    from omostc.llm.api import chat_backend, check_budget
    from omostc.llm.conversation import system_message, worked_example

    kind = settings.kind
    backend = backend or chat_backend(settings)
    check_budget(backend, (settings.sampling or SamplingOptions()).max_tokens)
    return ChatSession(backend, settings.sampling or SamplingOptions(),
                       messages=[Message("system", system_message(kind)),
                                 *(worked_example() if kind == "generic" else [])],
                       context=settings.context or getattr(backend, "context", None) or CONTEXT_TOKENS,
                       partial=settings.partial)
