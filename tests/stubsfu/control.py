"""The test control surface: HTTP over a UNIX socket (the filesystem crosses network namespaces; ports don't).

    GET  /state                      rooms, participants, agent, session dirs, event log (JSON)
    POST /drop-websocket             abort every client websocket without a close frame (the SDK resumes)
    POST /leave?action=reconnect     send LeaveRequest(RECONNECT) — or action=disconnect / resume
    POST /refresh-token              push a RefreshToken now
    POST /agent/join                 make the agent join now
    POST /agent/leave                make the agent leave the room
    POST /flush                      rewrite every session's files now

`ControlClient` is the blocking client the tests use.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from pathlib import Path
from typing import Any

from aiohttp import web
from livekit.protocol import rtc

from .server import StubServer

ACTIONS = {"reconnect": rtc.LeaveRequest.RECONNECT, "disconnect": rtc.LeaveRequest.DISCONNECT,
           "resume": rtc.LeaveRequest.RESUME}


def make_app(server: StubServer) -> web.Application:
    async def state(_request: web.Request) -> web.Response:
        return web.json_response(server.snapshot(), dumps=lambda o: json.dumps(o, default=str))

    async def drop(_request: web.Request) -> web.Response:
        return web.json_response({"dropped": server.drop_websockets()})

    async def leave(request: web.Request) -> web.Response:
        action = request.query.get("action", "reconnect")
        if action not in ACTIONS:
            return web.json_response({"error": f"action must be one of {sorted(ACTIONS)}"}, status=400)
        return web.json_response({"sent": await server.send_leave(ACTIONS[action])})

    async def refresh(_request: web.Request) -> web.Response:
        return web.json_response({"sent": await server.push_refresh_tokens()})

    async def agent_join(_request: web.Request) -> web.Response:
        for room in server.rooms.values():
            room.agent.join()
        return web.json_response({"rooms": len(server.rooms)})

    async def agent_leave(_request: web.Request) -> web.Response:
        for room in server.rooms.values():
            room.agent.leave()
        return web.json_response({"rooms": len(server.rooms)})

    async def agent_rpc(request: web.Request) -> web.Response:
        method, payload = request.query.get("method", ""), request.query.get("payload", "")
        ids = [i for room in server.rooms.values() for i in room.agent.call_client(method, payload)]
        return web.json_response({"requests": ids})

    async def agent_event(request: web.Request) -> web.Response:
        event = json.loads(request.query.get("json", "{}"))
        return web.json_response({"clients": sum(room.agent.send_event(event) for room in server.rooms.values())})

    async def flush(_request: web.Request) -> web.Response:
        for room in server.rooms.values():
            room.agent.flush()
        return web.json_response({"rooms": len(server.rooms)})

    app = web.Application()
    app.add_routes([
        web.get("/state", state), web.post("/drop-websocket", drop), web.post("/leave", leave),
        web.post("/refresh-token", refresh), web.post("/agent/join", agent_join),
        web.post("/agent/leave", agent_leave), web.post("/agent/rpc", agent_rpc), web.post("/agent/event", agent_event),
        web.post("/flush", flush),
    ])
    return app


async def start_control(server: StubServer, path: Path) -> web.AppRunner:
    path.unlink(missing_ok=True)
    runner = web.AppRunner(make_app(server), access_log=None)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    return runner


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class ControlClient:
    """Blocking client for the control socket (fine from tests and scripts; every call is bounded)."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def request(self, method: str, url: str) -> Any:
        conn = _UnixConnection(self.path, self.timeout)
        try:
            conn.request(method, url)
            response = conn.getresponse()
            body = response.read()
            if response.status >= 400:
                raise RuntimeError(f"stub control {method} {url}: {response.status} {body.decode(errors='replace')}")
            return json.loads(body)
        finally:
            conn.close()

    def state(self) -> dict[str, Any]:
        return self.request("GET", "/state")

    def drop_websocket(self) -> Any:
        return self.request("POST", "/drop-websocket")

    def leave(self, action: str = "reconnect") -> Any:
        return self.request("POST", f"/leave?action={action}")

    def refresh_token(self) -> Any:
        return self.request("POST", "/refresh-token")

    def agent_join(self) -> Any:
        return self.request("POST", "/agent/join")

    def agent_leave(self) -> Any:
        return self.request("POST", "/agent/leave")

    def flush(self) -> Any:
        return self.request("POST", "/flush")

    def agent_rpc(self, method: str, payload: str = "") -> Any:
        """The agent calls `method` on the device (e.g. device.end_session)."""
        return self.request("POST", f"/agent/rpc?{urllib.parse.urlencode({'method': method, 'payload': payload})}")

    def agent_event(self, event: dict[str, Any]) -> Any:
        """The agent streams one `lk.agent.events` message, e.g. {"type": "user_state_changed", ...}."""
        return self.request("POST", f"/agent/event?{urllib.parse.urlencode({'json': json.dumps(event)})}")

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        items = self.state()["events"]
        return [e for e in items if kind is None or e["kind"] == kind]
