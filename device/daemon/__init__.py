"""Daemon: wires config, audio, controls and session on one asyncio loop.

Owns systemd notify (READY, STATUS, WATCHDOG tied to real health), signal handling (SIGTERM/SIGINT stop,
SIGHUP reload) and the local control socket.
"""
