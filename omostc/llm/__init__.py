"""The LLM front: ask a model for Canvas code, compile the answer, keep the conversation.

``conversation`` (Omost's prompts, context trimming), ``server`` (OpenAI-compatible endpoints),
``local`` (transformers in this process), ``generation`` (ask until an answer compiles) and
``chat`` (an interactive session's state, usable without a terminal).
"""

from omostc.diagnostics import LLMError
from omostc.llm.api import DEFAULT_MODEL, Answer, LLMSettings, chat_backend, edit, generate
from omostc.llm.chat import ChatSession, open_session
from omostc.llm.conversation import (
    CONTEXT_TOKENS,
    GENERIC_INSTRUCTIONS,
    SamplingOptions,
    edit_conversation,
    estimate_tokens,
    new_conversation,
    system_message,
    trim_conversation,
    worked_example,
)
from omostc.llm.generation import Generation, generate_scene
from omostc.llm.local import TransformersChatBackend
from omostc.llm.server import OpenAIChatBackend
from omostc.spec.model import Message

__all__ = [
    "DEFAULT_MODEL", "open_session", "Answer", "LLMSettings", "chat_backend", "edit", "generate_scene",
    "CONTEXT_TOKENS", "GENERIC_INSTRUCTIONS", "ChatSession", "Generation", "LLMError", "Message",
    "OpenAIChatBackend", "SamplingOptions", "TransformersChatBackend", "edit_conversation", "estimate_tokens",
    "generate", "new_conversation", "system_message", "trim_conversation", "worked_example",
]
