"""The fleet's engine in the test rig: several livekit-server nodes sharing Redis, agent workers, the token endpoint."""
