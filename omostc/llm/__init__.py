"""The LLM front: ask a model for Canvas code, compile the answer, keep the conversation.

``conversation`` (Omost's prompts, context trimming), ``server`` (OpenAI-compatible endpoints;
``replies`` reads their streams), ``local`` (transformers in this process), ``generation`` (ask
until an answer compiles), ``chat`` (an interactive session's state, usable without a terminal)
and ``api`` (``generate`` and ``edit``, what the commands call). Names are loaded on first use,
so importing one part does not import the others (the HTTP client, transformers).
"""

from importlib import import_module
from typing import Any

_NAMES = {
    "omostc.llm.api": ("DEFAULT_MODEL", "Answer", "LLMSettings", "chat_backend", "edit", "generate"),
    "omostc.llm.chat": ("ChatSession", "open_session"),
    "omostc.llm.conversation": ("CONTEXT_TOKENS", "GENERIC_INSTRUCTIONS", "SamplingOptions", "edit_conversation",
                                "estimate_tokens", "new_conversation", "system_message", "trim_conversation",
                                "worked_example"),
    "omostc.llm.generation": ("Generation", "generate_scene"),
    "omostc.llm.local": ("TransformersChatBackend",),
    "omostc.llm.server": ("OpenAIChatBackend",),
    "omostc.spec.model": ("Message",),
    "omostc.diagnostics": ("LLMError",),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'omostc.llm' has no attribute {name!r}")


__all__ = sorted(_WHERE)
