"""The server API and one-off joins, run inside the namespace (the server listens only there):

    python -m tests.livekit.admin delete-room ROOM
    python -m tests.livekit.admin remove-participant ROOM IDENTITY
    python -m tests.livekit.admin participants ROOM          (JSON list of identities)
    python -m tests.livekit.admin try-join TOKEN             (prints "joined" or "refused: <error>")

Uses livekit-api's RoomServiceClient with the test key pair and the SDK for `try-join`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from tests.livekit.server import API_KEY, API_SECRET


async def room_service(url: str, verb: str, args: list[str]) -> str:
    from livekit import api

    async with api.LiveKitAPI(url.replace("ws://", "http://"), API_KEY, API_SECRET) as lk:
        if verb == "delete-room":
            await lk.room.delete_room(api.DeleteRoomRequest(room=args[0]))
            return "deleted"
        if verb == "remove-participant":
            await lk.room.remove_participant(api.RoomParticipantIdentity(room=args[0], identity=args[1]))
            return "removed"
        if verb == "participants":
            listing = await lk.room.list_participants(api.ListParticipantsRequest(room=args[0]))
            return json.dumps([p.identity for p in listing.participants])
    raise SystemExit(f"unknown verb {verb}")


async def try_join(url: str, token: str) -> str:
    from livekit import rtc

    room = rtc.Room()
    try:
        await asyncio.wait_for(room.connect(url, token), 15)
    except (rtc.ConnectError, TimeoutError) as e:
        return f"refused: {e}"
    await room.disconnect()
    return "joined"


def main() -> int:
    url, verb, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    out = asyncio.run(try_join(url, args[0]) if verb == "try-join" else room_service(url, verb, args))
    print(out, flush=True)
    # a refused connect leaves the SDK's native threads retrying; interpreter teardown under them can abort the
    # process (SIGABRT) after the answer is out: leave without it (shared/docs/test-rig-facts.md)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
