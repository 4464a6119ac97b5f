"""The token endpoint over real HTTP on 127.0.0.1 (in this process, with a hand-driven clock for the rate limits):
what a credential earns, what it cannot ask for, every way it is refused, and which node it is sent to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from livekit import api
from voice_device_tokens.app import Endpoint, make_app
from voice_device_tokens.config import load
from voice_device_tokens.grant import room_for
from voice_device_tokens.health import probe_all
from voice_device_tokens.nodes import NodePool
from voice_device_tokens.ratelimit import Limiter
from voice_device_tokens.store import Store

from device.core.agent_contract import device_attributes
from device.session.tokens import TokenRequest, jwt_claims
from tests.tokenserver.harness import API_KEY, API_SECRET, Node, write_config

ATTRIBUTES = tuple(sorted(device_attributes("push_to_talk", "0.1.0").items()))


def device_body(room: str = "voice-device-1a2b3c4d", identity: str = "device-x", agent: str = "some-other-agent"):
    """What the device's own client sends (device/session/tokens.py)."""
    return TokenRequest(room_name=room, participant_identity=identity, participant_name="Lobby kiosk",
                        participant_attributes=ATTRIBUTES, agent_name=agent).body()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    url: str
    store: Store
    nodes: list[Node]
    endpoint: Endpoint
    clock: Clock
    http: aiohttp.ClientSession

    async def post(self, credential: str | None, body: Any = None, *, client: str | None = None,
                   raw: bytes | None = None) -> tuple[int, dict[str, Any], Any]:
        headers = {"Authorization": f"Bearer {credential}"} if credential is not None else {}
        if client:
            headers["X-Forwarded-For"] = f"10.9.9.9, {client}"
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": device_body() if body is None else body}
        async with self.http.post(self.url + "/voice-device", headers=headers, **kwargs) as resp:
            return resp.status, await resp.json(), resp.headers

    async def probe(self) -> None:
        await probe_all(self.endpoint.pool, self.http, 10.0)  # generous: a loaded machine is not a dead node


async def world_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nodes: int = 1,
                    **overrides: object) -> AsyncIterator[World]:
    monkeypatch.setenv("LIVEKIT_API_SECRET", API_SECRET)
    started = [await Node().start() for _ in range(nodes)]
    store = Store(tmp_path / "devices.sqlite")
    config = load(write_config(tmp_path, store.path, [n.url for n in started], **overrides))
    clock = Clock()
    endpoint = Endpoint(config, store, NodePool(config.nodes), Limiter(config.limits.per_device, clock),
                        Limiter(config.limits.failed_auth, clock), clock)
    runner = web.AppRunner(make_app(endpoint), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    async with aiohttp.ClientSession() as http:
        world = World(f"http://127.0.0.1:{runner.addresses[0][1]}", store, started, endpoint, clock, http)
        await world.probe()
        yield world
    await runner.cleanup()
    for node in started:
        await node.stop()
    store.close()


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    async for w in world_for(tmp_path, monkeypatch,
                             rate_limits={"failed_auth": {"burst": 5, "per_minute": 1},
                                          "client_address_header": "X-Forwarded-For"}):
        yield w


def enrol(world: World, device: str, group: str = "kiosks") -> str:
    credential, _ = world.store.enrol(device, group)
    return credential.text()


async def test_an_enrolled_credential_gets_a_token_for_its_identity_its_room_its_groups_agent_and_its_attributes(
        world: World) -> None:
    credential = enrol(world, "kiosk-1")
    status, answer, headers = await world.post(credential)
    assert status == 201 and headers["Cache-Control"] == "no-store"
    assert answer["server_url"] == world.nodes[0].url
    claims = api.TokenVerifier(API_KEY, API_SECRET).verify(answer["participant_token"])
    assert claims.identity == "kiosk-1" and claims.name == "Lobby kiosk"
    assert claims.video is not None and claims.video.room_join and claims.video.can_update_own_metadata
    assert claims.video.room == room_for("kiosk-1", "voice-device-1a2b3c4d")
    assert claims.room_config is not None
    assert [a.agent_name for a in claims.room_config.agents] == ["kiosk-agent"]  # the group's, not the request's
    assert claims.attributes == dict(ATTRIBUTES)
    raw = jwt_claims(answer["participant_token"]) or {}
    assert isinstance(raw["exp"], int) and isinstance(raw["nbf"], int) and raw["exp"] - raw["nbf"] == 900  # group ttl


async def test_a_session_refetching_stays_in_its_room_and_a_new_session_gets_a_new_one(world: World) -> None:
    credential = enrol(world, "kiosk-1")
    rooms = []
    for requested in ("voice-device-aaaa", "voice-device-aaaa", "voice-device-bbbb"):
        _, answer, _ = await world.post(credential, device_body(room=requested))
        rooms.append(api.TokenVerifier(API_KEY, API_SECRET).verify(answer["participant_token"]).video.room)
    assert rooms[0] == rooms[1] != rooms[2] and all(r.startswith("kiosk-1.") for r in rooms)


async def test_a_device_cannot_get_another_devices_identity_or_room(world: World) -> None:
    mine, theirs = enrol(world, "kiosk-1"), enrol(world, "kiosk-2")
    _, their_answer, _ = await world.post(theirs, device_body(room="voice-device-0001"))
    their_room = api.TokenVerifier(API_KEY, API_SECRET).verify(their_answer["participant_token"]).video.room
    for asked_room in ("voice-device-0001", their_room):
        status, answer, _ = await world.post(mine, device_body(room=asked_room, identity="kiosk-2"))
        claims = api.TokenVerifier(API_KEY, API_SECRET).verify(answer["participant_token"])
        assert status == 201 and claims.identity == "kiosk-1"
        assert claims.video.room.startswith("kiosk-1.") and claims.video.room != their_room


async def test_every_bad_credential_is_refused_alike_and_counted_against_the_clients_address(world: World) -> None:
    good = enrol(world, "kiosk-1")
    rotated_away = enrol(world, "kiosk-2")
    enrol(world, "kiosk-2")  # re-enrolment: the first credential stops working at once
    revoked = enrol(world, "kiosk-3")
    world.store.revoke("kiosk-3")
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for bad in ("garbage", wrong_secret, rotated_away, revoked, "vdc1.nobody." + "A" * 43):
        status, answer, headers = await world.post(bad, client="10.0.0.1")
        assert status == 401, bad
        assert headers["WWW-Authenticate"].startswith("Bearer") and "enrol the device again" in answer["error"]
    # five failures from 10.0.0.1 used its burst: even a good credential waits there, not elsewhere
    status, answer, headers = await world.post(good, client="10.0.0.1")
    assert status == 429 and headers["Retry-After"] == "60" and "failed authentications" in answer["error"]
    assert (await world.post(good, client="10.0.0.2"))[0] == 201
    world.clock.now += 60
    assert (await world.post(good, client="10.0.0.1"))[0] == 201


async def test_a_revoked_device_hears_that_it_was_revoked(world: World) -> None:
    credential = enrol(world, "kiosk-1")
    world.store.revoke("kiosk-1")
    status, answer, _ = await world.post(credential)
    assert status == 401 and "revoked" in answer["error"]


async def test_no_credential_at_all_is_refused(world: World) -> None:
    status, answer, _ = await world.post(None)
    assert status == 401 and answer["error"]


async def test_a_device_asking_too_often_is_told_when_to_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async for w in world_for(tmp_path, monkeypatch, rate_limits={"per_device": {"burst": 2, "per_minute": 2}}):
        credential, other = enrol(w, "kiosk-1"), enrol(w, "kiosk-2")
        assert [(await w.post(credential))[0] for _ in range(2)] == [201, 201]
        status, answer, headers = await w.post(credential)
        assert status == 429 and headers["Retry-After"] == "30" and "too often" in answer["error"]
        assert (await w.post(other))[0] == 201  # per device
        w.clock.now += 30
        assert (await w.post(credential))[0] == 201


async def test_only_nodes_answering_their_health_probe_are_handed_out_in_turn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async for w in world_for(tmp_path, monkeypatch, nodes=2,
                             rate_limits={"per_device": {"burst": 20, "per_minute": 1}}):
        credential = enrol(w, "kiosk-1")
        a, b = (n.url for n in w.nodes)
        assert [(await w.post(credential))[1]["server_url"] for _ in range(4)] == [a, b, a, b]
        await w.nodes[0].stop()
        await w.probe()
        assert {(await w.post(credential))[1]["server_url"] for _ in range(3)} == {b}
        await w.nodes[1].stop()
        await w.probe()
        status, answer, _ = await w.post(credential)
        assert status == 503 and "no LiveKit node" in answer["error"]
        await w.nodes[0].start(port=int(a.rsplit(":", 1)[1]))
        await w.probe()
        assert (await w.post(credential))[1]["server_url"] == a


async def test_a_request_setting_livekits_own_attributes_or_not_json_is_a_bad_request(world: World) -> None:
    credential = enrol(world, "kiosk-1")
    body = {"room_name": "r", "participant_attributes": {"lk.agent.state": "speaking"}}
    status, answer, _ = await world.post(credential, body)
    assert status == 400 and "lk.agent.state" in answer["error"]
    status, answer, _ = await world.post(credential, raw=b"{not json")
    assert status == 400 and "not JSON" in answer["error"]


async def test_a_device_in_a_group_the_configuration_lacks_gets_a_server_error_not_a_token(world: World) -> None:
    credential = enrol(world, "kiosk-1", group="retired")
    status, answer, _ = await world.post(credential)
    assert status == 500 and "group is not configured" in answer["error"]


async def test_healthz_answers_for_load_balancers_with_the_healthy_node_count(world: World) -> None:
    async with world.http.get(world.url + "/healthz") as resp:
        assert resp.status == 200 and await resp.json() == {"ok": True, "nodes_healthy": 1, "nodes": 1}
