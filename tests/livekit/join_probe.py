"""Print the ICE servers the real server hands a joining client: one signalling join over the websocket, then
leave. Run inside the test namespace:  python -m tests.livekit.join_probe --url ws://… --token JWT

It joins the legacy way (`/rtc?access_token=…`): the JoinResponse (and its `ice_servers`) comes from the same
server code (RoomManager.iceServersForParticipant) whichever path the SDK uses. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys

from livekit.protocol import rtc as proto
from websockets.sync.client import connect


def join_response(url: str, token: str, timeout: float = 10.0) -> proto.JoinResponse:
    query = f"access_token={token}&protocol=16&sdk=python&auto_subscribe=0"
    with connect(f"{url}/rtc?{query}", open_timeout=timeout) as ws:
        while True:
            message = ws.recv(timeout=timeout)
            response = proto.SignalResponse()
            response.ParseFromString(message if isinstance(message, bytes) else message.encode())
            if response.WhichOneof("message") == "join":
                ws.send(proto.SignalRequest(leave=proto.LeaveRequest()).SerializeToString())
                return response.join


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    args = p.parse_args()
    join = join_response(args.url, args.token)
    servers = [{"urls": list(s.urls), "username": bool(s.username)} for s in join.ice_servers]
    print(json.dumps({"ice_servers": servers, "server_version": join.server_info.version}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
