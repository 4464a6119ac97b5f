"""voice-device: a headless daemon that turns a Raspberry-Pi-class board into a LiveKit voice-agent device.

Layers, each a sub-package that imports only the ones listed before it (`tests/test_layers.py` checks):
core (the vocabulary, modes, backoff, logging) → config → audio → controls → session → daemon, with `cli` on top.
"""

__version__ = "0.1.0"
