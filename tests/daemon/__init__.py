"""Tests of the daemon layer: notify, watchdog, signals, control socket, systemd unit and installer."""
