"""A scripted LLM: answers the last user message with a sentence made from it, at once, offline — and calls the
device's tools (voice_device_agent's `set_volume`, `get_device_status`, `end_conversation`) when the user's
words ask for them and the agent offers them, the way a real LLM would:

- "… volume to 30 percent" → `set_volume(volume=0.3)`
- "… status …"             → `get_device_status()`
- "goodbye …"              → says "Goodbye." and calls `end_conversation()`

After a tool ran, it answers with the tool's output ("Done. <output>").
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from livekit.agents import llm
from livekit.agents.llm.tool_context import get_fnc_tool_names
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

from tests.livekit.agent.record import Recorder

VOLUME = re.compile(r"volume to (\d{1,3}) ?(?:percent|%)", re.IGNORECASE)


def reply_to(user_text: str) -> str:
    return f"You said: {user_text}." if user_text else "I did not hear anything."


def tool_for(user_text: str, offered: list[str]) -> tuple[str, dict[str, Any], str] | None:
    """(tool, arguments, what is said with the call) that the user's words ask for, among the offered tools."""
    wanted: tuple[str, dict[str, Any], str] | None = None
    if m := VOLUME.search(user_text):
        wanted = ("set_volume", {"volume": int(m.group(1)) / 100}, "")
    elif "status" in user_text.lower():
        wanted = ("get_device_status", {}, "")
    elif user_text.lower().startswith(("goodbye", "bye")):
        wanted = ("end_conversation", {}, "Goodbye.")
    return wanted if wanted is not None and wanted[0] in offered else None


class ScriptedLLM(llm.LLM):
    def __init__(self, recorder: Recorder | None = None) -> None:
        super().__init__()
        self.recorder = recorder or Recorder(None)

    def chat(self, *, chat_ctx: llm.ChatContext, tools: list[Any] | None = None,
             conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS, **_: Any) -> ScriptedStream:
        return ScriptedStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class ScriptedStream(llm.LLMStream):
    _llm: ScriptedLLM

    async def _run(self) -> None:
        recorder = self._llm.recorder
        items = self._chat_ctx.items
        if items and items[-1].type == "function_call_output":
            output = items[-1]
            recorder.event("tool_output", name=output.name, output=output.output, is_error=output.is_error)
            self._say(f"Done. {output.output}")
            return
        users = [item for item in items if item.type == "message" and item.role == "user"]
        text = (users[-1].text_content or "").strip() if users else ""
        call = tool_for(text, get_fnc_tool_names(self._tools))
        if call is not None:
            name, arguments, said = call
            recorder.event("tool_call", user=text, name=name, arguments=arguments)
            if said:
                self._say(said)
            self._event_ch.send_nowait(llm.ChatChunk(id=uuid.uuid4().hex, delta=llm.ChoiceDelta(
                role="assistant", tool_calls=[llm.FunctionToolCall(name=name, arguments=json.dumps(arguments),
                                                                   call_id=uuid.uuid4().hex)])))
            return
        answer = reply_to(text)
        recorder.event("llm_reply", user=text, reply=answer)
        self._say(answer)

    def _say(self, text: str) -> None:
        self._event_ch.send_nowait(llm.ChatChunk(id=uuid.uuid4().hex,
                                                 delta=llm.ChoiceDelta(role="assistant", content=text)))
