"""The mic uplink: what the user says, from the session's mark to the agent (buffer, pre-connect stream, live track)."""
