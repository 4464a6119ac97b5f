"""Layer 0: what every layer speaks and nothing depends on — the vocabulary (states, failure reasons, events,
effects), the session modes, and backoff. It imports nothing else from `device`."""
