"""The session process: the daemon's proxy (`remote.py`), the child that runs the supervisor (`host.py`), the
messages between them (`protocol.py`) and their channel (`ipc.py`)."""
