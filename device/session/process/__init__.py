"""The session process: the daemon's proxy (`remote.py`), its children (`child.py`) and their pool (`pool.py`), the
always_on restart policy (`restart.py`), the child that runs the supervisor (`host.py`, its audio `child_audio.py`),
the messages between them (`protocol.py`) and their channel (`ipc.py`)."""
