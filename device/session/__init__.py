"""Session: everything LiveKit over the network.

Owns token sources and their cache, the session supervisor (connect, reconnect with backoff, failure
classification, agent-connect / idle / max-length timeouts), agent tracking from `lk.agent.state`, the
pre-connect audio sender, publishing the mic and playing the agent. The only package that uses Room.
"""
