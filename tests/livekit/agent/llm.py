"""A scripted LLM: answers the last user message with a sentence made from it, at once, offline."""

from __future__ import annotations

import uuid
from typing import Any

from livekit.agents import llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

from tests.livekit.agent.record import Recorder


def reply_to(user_text: str) -> str:
    return f"You said: {user_text}." if user_text else "I did not hear anything."


class ScriptedLLM(llm.LLM):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def chat(self, *, chat_ctx: llm.ChatContext, tools: list[Any] | None = None,
             conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS, **_: Any) -> ScriptedStream:
        return ScriptedStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class ScriptedStream(llm.LLMStream):
    _llm: ScriptedLLM

    async def _run(self) -> None:
        users = [item for item in self._chat_ctx.items if item.type == "message" and item.role == "user"]
        text = (users[-1].text_content or "").strip() if users else ""
        answer = reply_to(text)
        self._llm.recorder.event("llm_reply", user=text, reply=answer)
        self._event_ch.send_nowait(llm.ChatChunk(id=uuid.uuid4().hex,
                                                 delta=llm.ChoiceDelta(role="assistant", content=answer)))
