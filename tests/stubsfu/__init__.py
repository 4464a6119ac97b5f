"""A stub LiveKit SFU with a scripted agent, for driving the real `livekit` SDK in tests and the demo.

Run it on its own:

    python -m tests.stubsfu --port 7880 --agent-delay 2 --agent-reply echo --record /tmp/rec \\
        --control /tmp/stubsfu.sock [--ptt] [--api-key devkey --api-secret secret]

It prints `stubsfu ready url=ws://HOST:PORT [control=SOCKET]` once listening. Connect with any token signed
by the key/secret (`devkey`/`secret` by default, like `livekit-server --dev`) that grants `room_join` to a room.
libwebrtc ignores loopback interfaces: run the stub and the client inside one network namespace with a veth
pair (see tests/stubsfu/netns.py and tests/wire/conftest.py).

What it speaks (livekit 1.2.1, single peer connection, `/rtc/v1`):
- JWT check with livekit-api's TokenVerifier: a bad or expired token gets HTTP 401 (the SDK raises
  ConnectError with 401); `/rtc/validate` explains it. `/rtc` (two peer connections) answers 404.
- JoinResponse (RM_/PA_/TR_ SIDs, ping 5/15 s), the embedded publisher offer answered, trickle both ways,
  AddTrackRequest → TrackPublishedResponse, ping/pong, a refreshed token right after join and every
  `--refresh-token-every` seconds, participant updates, LeaveRequest, resume (`reconnect=true`) with the
  participant list re-sent. aiortc has no ICE restart: a resume works while the old candidate pair does.
- Versions: the stub refuses to start unless livekit/livekit-protocol/aiortc are at the pinned versions,
  and refuses (HTTP 400, then exits with status 3) a join announcing another signalling protocol.

The scripted agent (identity `agent-AJ_…`, kind AGENT, attribute `lk.agent.name`: the agent the first client's
token dispatches, else `--agent-name`) joins `--agent-delay`
seconds after the first participant (`never`: it does not), walks `lk.agent.state` initializing → listening
→ thinking → speaking → listening, subscribes to the microphone (the client gets `local_track_subscribed`),
takes the pre-connect buffer (topic `lk.agent.pre-connect-audio-buffer`) by livekit-agents' rules, answers
each turn (energy VAD, or `start_turn`/`end_turn`/`cancel_turn` RPCs with `--ptt`) with its own audio
track: an echo of the turn or the `--agent-reply` WAV; it also sends a short `lk.transcription` text stream.
Per subscribed mic track it writes `--record DIR/session-N/`: `preconnect.raw` (payload as received),
`heard.wav` (pre-connect audio then live audio), `meta.json` (track_id, published_track_sid,
preconnect_status, preconnect_attributes/topic/mime_type/samples, sample_rate, channels,
live_first_sample_index, stream_open_to_close_ms, rpc_calls, turns). `DIR/events.jsonl` logs everything.

Control (tests, scripts) over `--control SOCKET` (HTTP on a UNIX socket; see control.py): GET /state,
POST /drop-websocket, /leave?action=reconnect|disconnect|resume, /refresh-token, /agent/join, /agent/leave,
/flush. `ControlClient(path)` wraps it.
"""
