"""`python -m tests.livekit.agent --url ws://… --api-key K --api-secret S --agent-name N --record DIR [--export DIR]`

Registers a worker named N with the server (explicit dispatch only: a room gets it from a token's room_config)
and runs each job in a thread of this process. Prints `agent worker registered id=…` once registered. The device's
mode decides the turns (voice_device_agent reads it). Run it with .venv-agent's python (livekit-agents 1.8.9 and
its livekit 1.1.21, the companion installed from agent/).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from livekit.agents import AgentServer, JobExecutorType

from tests.livekit.agent.worker import entrypoint, prewarm


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.livekit.agent")
    p.add_argument("--url", required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--api-secret", required=True)
    p.add_argument("--agent-name", required=True)
    p.add_argument("--record", required=True, help="folder for the per-room recordings")
    p.add_argument("--export", help="also write each finished job as DIR/session-N/ (heard.wav, preconnect.raw, "
                                    "meta.json: the demo's --record)")
    p.add_argument("--start-turn-delay", type=float, default=0.0,
                   help="seconds start_turn waits before it enables the input (a slow agent)")
    return p.parse_args()


async def run(args: argparse.Namespace) -> None:
    os.environ["VD_AGENT_RECORD"] = args.record
    if args.export:
        os.environ["VD_AGENT_EXPORT"] = args.export
    os.environ["VD_AGENT_START_TURN_DELAY"] = str(args.start_turn_delay)
    server = AgentServer(ws_url=args.url, api_key=args.api_key, api_secret=args.api_secret,
                         job_executor_type=JobExecutorType.THREAD, num_idle_processes=0, host="127.0.0.1", port=0,
                         # the default load is the machine's CPU use; the server dispatches only to a worker whose
                         # load is below 1, so a busy 2-core test machine would make it refuse jobs at random
                         load_fnc=lambda: 0.0,
                         setup_fnc=prewarm, initialize_process_timeout=60.0, shutdown_process_timeout=5.0)
    server.rtc_session(entrypoint, agent_name=args.agent_name)

    @server.on("worker_registered")
    def _registered(worker_id: str, server_info: object) -> None:
        print(f"agent worker registered id={worker_id} name={args.agent_name}", flush=True)

    await server.run(devmode=True)


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run(parse()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
