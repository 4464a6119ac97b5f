"""voice-device-agent: the companion of voice-device for livekit-agents (PROTOCOL.md in the voice-device repository).

    await ctx.connect()
    device = await voice_device_agent.attach(session, ctx.room)
    await session.start(agent=Agent(instructions=..., tools=device.tools()), room=ctx.room)
"""

from voice_device_agent.contract import PROTOCOL_VERSION, DeviceInfo, DeviceMode
from voice_device_agent.link import TOOLS, DeviceError, DeviceLink, attach

__all__ = ["PROTOCOL_VERSION", "TOOLS", "DeviceError", "DeviceInfo", "DeviceLink", "DeviceMode", "attach"]
