"""voice-device-tokens: the reference token endpoint of a voice-device fleet (LiveKit's standard token endpoint
format), each device enrolled with its own credential. Separate from the device's package: it runs on a server."""

__version__ = "0.1.0"
