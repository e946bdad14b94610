"""The pure tool-use machinery of autonomous runs (no I/O).

The ``PlannerActor`` drives a local model through a task with the tools of
child MCP servers. These pieces do the parts that need no I/O:

- :mod:`~bridge.planner.tools` and :mod:`~bridge.planner.schema`: MCP tools
  → OpenAI function tools (valid, unique names mapped back to their server;
  schemas cleaned for local servers);
- :mod:`~bridge.planner.extract`: calls the server left in the text, one
  parser per text form;
- :mod:`~bridge.planner.repair`: arguments that are almost JSON, and
  arguments cut off by the token limit;
- :mod:`~bridge.planner.validate`: arguments checked against the tool's
  schema, with short messages for the model;
- :mod:`~bridge.planner.budget`: cutting tool results and trimming the
  conversation to the model's context;
- :mod:`~bridge.planner.loops`: the same call made over and over.
"""

from bridge.planner.budget import CHARS_PER_TOKEN as CHARS_PER_TOKEN
from bridge.planner.budget import TrimResult as TrimResult
from bridge.planner.budget import cut_text as cut_text
from bridge.planner.budget import default_reply_tokens as default_reply_tokens
from bridge.planner.budget import estimate_message_tokens as estimate_message_tokens
from bridge.planner.budget import estimate_messages_tokens as estimate_messages_tokens
from bridge.planner.budget import estimate_tokens as estimate_tokens
from bridge.planner.budget import estimate_tools_tokens as estimate_tools_tokens
from bridge.planner.budget import pairing_problems as pairing_problems
from bridge.planner.budget import tool_result_budget as tool_result_budget
from bridge.planner.budget import trim_messages as trim_messages
from bridge.planner.extract import CallForm as CallForm
from bridge.planner.extract import ExtractedCall as ExtractedCall
from bridge.planner.extract import Extraction as Extraction
from bridge.planner.extract import KnownTools as KnownTools
from bridge.planner.extract import extract_tool_calls as extract_tool_calls
from bridge.planner.extract import split_reasoning as split_reasoning
from bridge.planner.loops import LoopDetector as LoopDetector
from bridge.planner.loops import canonical_arguments as canonical_arguments
from bridge.planner.loops import repeat_message as repeat_message
from bridge.planner.repair import ArgumentsStatus as ArgumentsStatus
from bridge.planner.repair import JSONRepair as JSONRepair
from bridge.planner.repair import ParsedArguments as ParsedArguments
from bridge.planner.repair import parse_arguments as parse_arguments
from bridge.planner.repair import repair_json as repair_json
from bridge.planner.schema import EMPTY_OBJECT_SCHEMA as EMPTY_OBJECT_SCHEMA
from bridge.planner.schema import clean_schema as clean_schema
from bridge.planner.schema import schema_types as schema_types
from bridge.planner.tools import MAX_TOOL_NAME_LENGTH as MAX_TOOL_NAME_LENGTH
from bridge.planner.tools import McpTool as McpTool
from bridge.planner.tools import PreparedTool as PreparedTool
from bridge.planner.tools import ToolCatalog as ToolCatalog
from bridge.planner.tools import build_catalog as build_catalog
from bridge.planner.tools import sanitize_tool_name as sanitize_tool_name
from bridge.planner.validate import Coercion as Coercion
from bridge.planner.validate import ValidationProblem as ValidationProblem
from bridge.planner.validate import ValidationResult as ValidationResult
from bridge.planner.validate import validate_arguments as validate_arguments
