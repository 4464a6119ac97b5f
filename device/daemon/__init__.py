"""Daemon: wires config, audio, controls and session on one asyncio loop.

Owns systemd notify (READY, STATUS, WATCHDOG tied to real health), signal handling (SIGTERM/SIGINT stop,
SIGHUP reload) and the local control socket. One module per job:
`notify` (sd_notify datagrams), `watchdog` (health-gated WATCHDOG=1), `signals` (stop/reload, stop budget),
`control` (the socket server and protocol), `client` (the CLI's side of it), `status` (one state, every outlet),
`app` (the `run` command wiring them to audio, controls and session).
"""
