"""The in-call memory tool, wired into Pipecat: the LLM's `remember_fact` function.

The domain (`agent.memory.in_call`) validates and writes the fact and
recomposes the prompt; here the tool is offered to the model, its call is
handed to the domain, and the new prompt becomes the LLM's system instruction
before Pipecat asks the model to go on (so the reply that follows already
knows). The tool call's own tokens are usage like any other and metered so.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from loguru import logger
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.llm_service import FunctionCallParams

from agent.memory.in_call import TOOL_DESCRIPTION, TOOL_NAME, TOOL_PROPERTIES, TOOL_REQUIRED, InCallMemory
from agent.memory.prompt import CompositePrompt
from engines.tokenizer import count_tokens
from pipeline.failover import FailoverLLMService

SCHEMA = FunctionSchema(name=TOOL_NAME, description=TOOL_DESCRIPTION, properties=TOOL_PROPERTIES,
                        required=TOOL_REQUIRED)
#: What offering the tool adds to every request's prompt (its JSON as sent), as the spend gate counts it.
TOOL_TOKENS = count_tokens(json.dumps([{"type": "function", "function": SCHEMA.to_default_dict()}]))


def offer_memory_tool(llm: FailoverLLMService, context: LLMContext, tool: InCallMemory,
                      on_prompt: Callable[[CompositePrompt], Awaitable[None]]) -> None:
    context.set_tools(ToolsSchema(standard_tools=[SCHEMA]))

    async def remember_fact(params: FunctionCallParams) -> None:
        try:
            result, prompt = await tool.remember(dict(params.arguments))
        except Exception as exc:  # the database went away: the conversation goes on without the write
            logger.warning(f"in-call memory write failed: {exc!r}")
            result, prompt = {"saved": False, "error": "memory is unavailable right now"}, None
        if prompt is not None:
            await on_prompt(prompt)  # the LLM's system prompt, before Pipecat asks it to go on
        await params.result_callback(result)

    llm.register_function(TOOL_NAME, remember_fact)
