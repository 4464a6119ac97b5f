"""The configuration schema: one frozen dataclass per subsystem, every key documented where it is declared.

A field's `metadata` carries what the loader checks (`choices`, `min`, `max`, `kind`) and whether the value
is a secret (masked by `voice-device check`, never logged). `config/reference.yaml` is the commented copy of
this file for people; `tests/test_config.py` checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from device.config.led_kinds import LED_KINDS
from device.config.wake_models import BUILTIN_WAKE_WORDS
from device.core.agent_contract import AgentMethod
from device.core.dynamic import FieldSpec, FieldValue
from device.core.modes import GESTURE_ACTIONS, GESTURES, MODES, Mode, get_mode

SAMPLE_RATES = (16000, 24000, 48000)
TOKEN_SOURCES = ("endpoint", "sandbox", "literal", "local")
LOG_LEVELS = ("debug", "info", "warning", "error")


def opt(default: FieldValue, doc: str, **checks: FieldValue) -> FieldSpec:
    """A dataclass field with its documentation and the loader's checks in metadata."""
    meta = {"doc": doc, **checks}
    if isinstance(default, (dict, list)):
        frozen = MappingProxyType(dict(default)) if isinstance(default, dict) else tuple(default)
        return field(default_factory=lambda: frozen, metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type, doc: str) -> FieldSpec:
    return field(default_factory=cls, metadata={"doc": doc})


EARCON_DOC = " (a WAV file; 'builtin' = the sound that ships with voice-device; null = silence)"


@dataclass(frozen=True)
class EarconsConfig:
    listening: str | None = opt("builtin", "played when the device starts listening (a press, a session start)"
                                + EARCON_DOC)
    stopped: str | None = opt("builtin", "played when the user's turn or the session ends" + EARCON_DOC)
    error: str | None = opt("builtin", "played when the session fails" + EARCON_DOC)
    wake: str | None = opt("builtin", "played when the wake word is heard" + EARCON_DOC)
    conversation_end: str | None = opt("builtin", "played when the follow-up window closes with nobody speaking"
                                       + EARCON_DOC)


@dataclass(frozen=True)
class AudioConfig:
    input_device: str = opt("default", "input device: a substring of its PortAudio name ('default' = system default)")
    output_device: str = opt("default", "output device: a substring of its PortAudio name")
    input_index: int | None = opt(None, "PortAudio index used when no name matches", min=0)
    output_index: int | None = opt(None, "PortAudio index used when no name matches", min=0)
    input_channels: int = opt(
        1, "channels to open the microphone with: 2 for stereo-only devices such as 2-mic HATs on plain ALSA "
        "(hw:), more for mic arrays; the pipeline is mono", min=1, max=8,
    )
    input_channel: int | None = opt(
        None, "which of those channels is the pipeline's mono (0 = the first); absent = their average", min=0, max=7,
    )
    sample_rate: int = opt(
        16000, "pipeline sample rate in Hz, mono int16 (16000: what speech-to-text and the wake word take)",
        choices=SAMPLE_RATES,
    )
    block_ms: int = opt(30, "PortAudio callback block length in ms", choices=(10, 20, 30, 40))
    ring_seconds: float = opt(10.0, "seconds of microphone audio the ring always holds", min=1.0, max=120.0)
    preroll_ms: int = opt(500, "audio kept from BEFORE a press or session start, in ms", min=0, max=5000)
    echo_cancellation: bool = opt(True, "run the echo canceller fed with what the speaker plays")
    noise_suppression: bool = opt(True, "run noise suppression on the mic")
    high_pass_filter: bool = opt(True, "remove DC and rumble from the mic")
    auto_gain_control: bool = opt(False, "automatic gain control on the mic")
    volume: float = opt(0.8, "playback volume, 0.0 to 1.0, in software (unused with a mixer), at the first start: "
                        "from then on the volume last set (buttons, ctl, the agent) is kept in daemon.state_dir",
                        min=0.0, max=1.0)
    mixer: str | None = opt(None, "ALSA mixer control that sets the speaker volume, e.g. 'Speaker' or 'PCM' ('auto': "
                            "the first with a playback volume on mixer_device; null: volume in software); the "
                            "level it has at start is kept")
    mixer_device: str = opt("default", "the ALSA control device of that mixer, as `amixer -D` takes it ('default', "
                            "'hw:0', 'hw:CARD=seeed2micvoicec')")
    jitter_ms: int = opt(60, "playback jitter buffer target in ms", min=20, max=1000)
    reopen_backoff_max_s: float = opt(10.0, "longest wait between attempts to reopen a lost device", min=0.1)
    earcons: EarconsConfig = section(EarconsConfig, "sounds the device makes (built in by default)")


@dataclass(frozen=True)
class ButtonConfig:
    pin: int = opt(17, "BCM GPIO number", min=0, max=53)
    pull_up: bool = opt(True, "use the internal pull-up (button wired to ground)")
    bounce_ms: int = opt(30, "debounce window in ms (implemented by voice-device, not the pin driver)", min=0, max=500)
    hold_s: float = opt(1.0, "a press held this long is a long press", min=0.1, max=10.0)
    double_press_s: float = opt(0.0, "second press within this window is a double press (0 = off)", min=0.0, max=2.0)


@dataclass(frozen=True)
class LedsConfig:
    kind: str = opt("none", "LED hardware", choices=LED_KINDS)  # the table itself: a kind added to it is a choice
    pins: tuple[int, ...] = opt([], "BCM pins: one for led/pwmled, three (r, g, b) for rgbled")
    active_high: bool = opt(True, "LED lit when the pin is high")
    count: int = opt(12, "number of pixels on an apa102 ring", min=1, max=256)
    brightness: float = opt(0.5, "maximum brightness, 0.0 to 1.0", min=0.0, max=1.0)
    spi_port: int = opt(0, "SPI port of an apa102 ring", min=0, max=1)
    spi_device: int = opt(0, "SPI chip select of an apa102 ring", min=0, max=1)
    power_pin: int | None = opt(
        None, "BCM GPIO driven high while the LEDs are in use, for HATs that switch their LEDs' power (ReSpeaker "
        "4-mic and 6-mic arrays: 5)", min=0, max=53,
    )


@dataclass(frozen=True)
class ControlsConfig:
    button: ButtonConfig | None = opt(None, "the main button (absent = no button)")
    mute_button: ButtonConfig | None = opt(None, "optional second button that toggles mute")
    volume_up_button: ButtonConfig | None = opt(None, "optional volume-up button")
    volume_down_button: ButtonConfig | None = opt(None, "optional volume-down button")
    gestures: dict[str, str] = opt(
        {},
        "override the profile's gesture map: press/release/long_press/double_press → action",
        keys=GESTURES,
        choices=GESTURE_ACTIONS,
    )
    leds: LedsConfig = section(LedsConfig, "status LEDs")


@dataclass(frozen=True)
class LiveKitConfig:
    token_source: str = opt("endpoint", "where tokens come from", choices=TOKEN_SOURCES)
    url: str | None = opt(None, "LiveKit server URL (ws:// or wss://) for literal/local sources", kind="ws_url")
    endpoint: str | None = opt(None, "token endpoint URL (https://, or http:// to localhost)", kind="http_url")
    endpoint_headers: dict[str, str] = opt({}, "extra HTTP headers for the token endpoint", secret=True)
    sandbox_id: str | None = opt(None, "LiveKit Cloud sandbox token server id", secret=True)
    token: str | None = opt(None, "a literal participant token (literal source)", secret=True)
    api_key: str | None = opt(None, "API key for the local (development) source (an identifier, not secret)")
    api_secret: str | None = opt(None, "API secret for the local source: belongs on a token server", secret=True)
    room: str | None = opt(None, "fixed room name (default: a fresh room per session)")
    room_prefix: str = opt("voice-device-", "prefix of the fresh room created per session")
    identity: str | None = opt(None, "participant identity (default: an id made once for this device and kept in "
                               "daemon.state_dir; without one, a hash of the machine id)")
    name: str | None = opt(None, "participant display name")
    metadata: str | None = opt(None, "participant metadata string")
    attributes: dict[str, str] = opt({}, "participant attributes")
    agent_name: str | None = opt(None, "agent to dispatch through room_config (absent = none dispatched); the "
                                 "session follows and obeys only the agent carrying this lk.agent.name (absent: "
                                 "the first agent to join)")
    agent_metadata: str | None = opt(None, "metadata passed to the dispatched agent")
    token_ttl_s: int = opt(3600, "lifetime of locally minted tokens", min=60, max=86400)
    http_timeout_s: float = opt(10.0, "token endpoint HTTP timeout", min=0.5, max=120.0)


@dataclass(frozen=True)
class BackoffConfig:
    base_s: float = opt(1.0, "first retry delay (full-jitter exponential)", min=0.05, max=60.0)
    cap_s: float = opt(30.0, "longest retry delay", min=0.1, max=3600.0)
    attempts: int = opt(5, "attempts before giving up (0 = retry forever)", min=0)


@dataclass(frozen=True)
class TurnsConfig:
    use_rpc: bool = opt(True, "use the agent's push-to-talk RPCs when it offers them")
    start_method: str = opt(AgentMethod.START_TURN.value, "RPC called on press")
    end_method: str = opt(AgentMethod.END_TURN.value, "RPC called on release")
    cancel_method: str = opt(AgentMethod.CANCEL_TURN.value, "RPC called on cancel")


@dataclass(frozen=True)
class SessionConfig:
    mode: str = opt("push_to_talk", "how sessions start and end (the profile)", choices=tuple(MODES))
    connect_timeout_s: float = opt(10.0, "deadline for token + room connect", min=1.0, max=120.0)
    agent_connect_timeout_s: float = opt(20.0, "an agent must join and initialise within this", min=1.0, max=300.0)
    idle_timeout_s: float = opt(30.0, "agent listening and no speech this long ends the session (0 = never; "
                                "wake_word mode: wake_word.follow_up_s instead)", min=0.0)
    max_session_s: float = opt(600.0, "longest session (0 = unlimited)", min=0.0)
    preconnect: bool = opt(True, "send audio captured before the agent joined (pre-connect protocol)")
    preconnect_max_s: float = opt(10.0, "longest pre-connect buffer; older audio is dropped", min=0.5, max=30.0)
    resend_after_reconnect_s: float = opt(
        5.0, "speech captured while reconnecting that is re-sent after a full rejoin", min=0.0, max=30.0
    )
    reconnect_timeout_s: float = opt(
        10.0, "a reconnect still under way after this long is given up: the session fails (connection-lost) and is "
        "retried with a fresh token, which a fleet's token endpoint gives for a live node (0 = leave it to the SDK, "
        "which tries a dead server for ~20 s)", min=0.0, max=120.0
    )
    speech_threshold_dbfs: float = opt(-45.0, "energy gate for 'the user is speaking'", min=-90.0, max=0.0)
    process: str = opt(
        "warm", "where a session's LiveKit connection runs: 'warm' = its own child process, started ahead and "
        "replaced after every session (the SDK's native memory goes with it; a native crash ends one session, not "
        "the daemon); 'on_demand' = the same, started at the press (less idle memory, slower first answer); "
        "'inline' = inside the daemon", choices=("warm", "on_demand", "inline"),
    )
    process_hang_s: float = opt(
        10.0, "a session process that says nothing for this long is taken for hung, stopped and the session failed "
        "(`internal`); it says something every second while it runs: raise it only for a board far slower than a "
        "Pi Zero 2 W (emulation)", min=2.0, max=300.0,
    )
    backoff: BackoffConfig = section(BackoffConfig, "reconnect backoff")
    turns: TurnsConfig = section(TurnsConfig, "push-to-talk turns")

    @property
    def profile(self) -> Mode:
        """What `mode` means (device/core/modes.py): gestures, turns, timers, whether the session is kept up."""
        return get_mode(self.mode)


@dataclass(frozen=True)
class DaemonConfig:
    control_socket: str = opt("/run/voice-device/control.sock", "local control socket (unix stream)")
    control_socket_mode: int = opt(0o660, "permission bits of the control socket (octal)", min=0, max=0o777, octal=True)
    watchdog: bool = opt(True, "ping systemd's watchdog when the loop and the mic are healthy")
    status_file: str | None = opt(None, "also write the current state as JSON to this file")
    state_dir: str | None = opt(
        None, "where the device keeps what must survive a restart or a reboot (mute, the software volume, its "
        "identity); default: systemd's StateDirectory ($STATE_DIRECTORY, /var/lib/voice-device under the unit), "
        "nowhere when run by hand")
    boot_muted: bool = opt(False, "start muted at every start-up, whatever mute was when it stopped")
    restart_above_rss_mb: int = opt(
        0, "exit (code 75, systemd restarts it) when idle after a session with the daemon's RSS above this; a guard "
        "for session.process: inline, where the livekit 1.2.1 native core keeps ~0.6 MB per session (0 = never)",
        min=0, max=65536,
    )
    restart_min_interval_s: float = opt(
        150.0, "a planned restart (restart_above_rss_mb) comes at least this long after the previous one in the same "
        "boot, waiting while idle if need be: systemd counts planned restarts against the unit's StartLimitBurst=5 "
        "in StartLimitIntervalSec=300, and at 75 s or more they alone cannot reach it", min=75.0, max=86400.0,
    )


@dataclass(frozen=True)
class WakeWordConfig:
    models: tuple[str, ...] = opt(
        ["okay_nabu"], f"wake words listened for: built-in names ({', '.join(BUILTIN_WAKE_WORDS)}) or paths of "
        "microWakeWord JSON files (relative to this file); each model adds about 0.15 % of a core here",
    )
    cutoffs: dict[str, float] = opt(
        {}, "probability cutoff per model, overriding the model's own (okay_nabu 0.85, hey_jarvis 0.97, alexa 0.9, "
        "hey_mycroft 0.95): higher = fewer false wakes and more misses; keyed by model name (a built-in name or the "
        "JSON file's name without .json); tune with `voice-device wake-test`", min=0.01, max=0.999,
    )
    refractory_s: float = opt(2.0, "after a detection, the wake word is not heard again for this long", min=0.5,
                              max=30.0)
    send_wake_phrase: bool = opt(
        True, "the agent's audio starts just before the wake phrase (it hears 'okay nabu, what time is it'); false: "
        "it starts where the phrase is judged to have ended, which risks clipping the command: said straight on, "
        "with no pause, that is where the wake word was detected, 0.1-0.9 s into what followed it",
    )
    follow_up_s: float = opt(
        5.0, "after each answer of the agent, listen this long for more without the wake word (speech judged by "
        "the voice activity detector); the conversation ends when nobody speaks (0 = right after the answer; before "
        "the first answer the window is at least 5 s, while the agent takes the command)", min=0.0, max=60.0,
    )
    vad_threshold: float = opt(
        0.7, "speech probability (pymicro-vad) above which a 10 ms frame counts as speech in the follow-up window "
        "(lower hears softer speech and more of the television)", min=0.05, max=0.95,
    )


@dataclass(frozen=True)
class MetricsConfig:
    textfile: str = opt(
        "/var/lib/prometheus/node-exporter/voice-device.prom", "the file the metrics are written to, replaced "
        "atomically: in the directory node_exporter's textfile collector reads (--collector.textfile.directory; "
        "Debian's default is this one), whose files it reads only when their names end in .prom",
        kind="prom_file",
    )
    interval_s: float = opt(
        5.0, "each change of the status is written at once; besides, the file is rewritten this often (the process "
        "memory and CPU figures)", min=1.0, max=300.0,
    )


@dataclass(frozen=True)
class LoggingConfig:
    level: str = opt("info", "log level", choices=LOG_LEVELS)
    transcripts: bool = opt(
        False, "log each final transcript (what the user and the agent said) at INFO: a developer's switch, off in "
        "every shipped profile; off, `voice-device status` still shows the last ones, kept in memory only (never in "
        "daemon.status_file)",
    )


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = section(AudioConfig, "microphone and speaker")
    controls: ControlsConfig = section(ControlsConfig, "button and LEDs")
    livekit: LiveKitConfig = section(LiveKitConfig, "server, tokens and agent dispatch")
    session: SessionConfig = section(SessionConfig, "session supervisor")
    wake_word: WakeWordConfig = section(WakeWordConfig, "the wake word, heard on the device (voice-device wake-test)")
    daemon: DaemonConfig = section(DaemonConfig, "daemon, systemd and control socket")
    metrics: MetricsConfig | None = opt(
        None, "Prometheus metrics through node_exporter's textfile collector (no listening port); absent = none "
        "written")
    logging: LoggingConfig = section(LoggingConfig, "logging")
    source: str = field(default="<defaults>", compare=False, metadata={"internal": True})
