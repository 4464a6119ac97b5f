"""Diagnostics run by hand from the command line (`voice-device audio-test`, `wake-test`, `gpio-test`).

Each builds the daemon's own parts (the audio engine, the wake-word listener, the board) for one check and prints
what it finds; nothing in the daemon imports them. `device/cli.py` imports each inside its command's handler.
"""
