"""Recovering tool calls a server left in the assistant's text.

When a local server cannot parse a model's tool call (no native support for
the model, a parser bug, a call inside an unexpected wrapper), the call stays
in ``message.content`` as text and ``tool_calls`` is empty. These forms are
read back, each by its own parser in :mod:`._forms`:

- Hermes/Qwen ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``,
  also when the closing tag is missing at the end of the text;
- LM Studio's default ``[TOOL_REQUEST]{...}[END_TOOL_REQUEST]``;
- Qwen3-coder ``<function=name><parameter=key>value</parameter></function>``,
  bare or inside ``<tool_call>``, and Llama's ``<function=name>{json}</function>``;
- GLM ``<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>``;
- Mistral ``[TOOL_CALLS][{...}]`` and ``[TOOL_CALLS]name[ARGS]{...}``;
- gpt-oss Harmony ``to=functions.name ... <|message|>{...}<|call|>``;
- a fenced JSON block, or a bare JSON object, shaped like a call
  (``{"name", "arguments"}``, ``{"tool", "parameters"}``,
  ``{"function": {"name", "arguments"}}``) that names a *known* tool.

Text inside reasoning (``<think>...</think>``, an unclosed ``<think>``, a
``</think>`` with no opening tag, Harmony's analysis channel) is never read
as a call: models plan calls there that they do not make (LM Studio BT#1592).
Known limitation: a ``<think>`` tag written inside a call's argument is taken
as reasoning too.
"""

from __future__ import annotations

from bridge.planner.extract._find import extract_tool_calls
from bridge.planner.extract._model import CallForm, ExtractedCall, Extraction, KnownTools
from bridge.planner.extract._reasoning import split_reasoning

__all__ = [
    "CallForm",
    "ExtractedCall",
    "Extraction",
    "KnownTools",
    "extract_tool_calls",
    "split_reasoning",
]
