"""Run the daemon's native libraries under the unit's seccomp rules, without systemd.

systemd 252 implements MemoryDenyWriteExecute= as a seccomp filter that fails with EPERM: mmap/mmap2 asking
for PROT_WRITE|PROT_EXEC together, mprotect/pkey_mprotect asking for PROT_EXEC at all, and shmat with
SHM_EXEC. This script installs the same filter on itself (no privilege needed after PR_SET_NO_NEW_PRIVS),
proves the filter bites (a W+X mmap must fail), then exercises livekit.rtc's FFI (ctypes callback, audio
source, track and stream, APM, resampler, a refused connect through the Rust network stack), a session process
(the filter is inherited: fork, exec, its own livekit import), PyAudio and numpy. With `--allow N,N,...`
every other syscall fails with EPERM as well: the unit's SystemCallFilter= as an allow list of syscall numbers
(the test expands the unit's groups with `systemd-analyze syscall-filter`).
It prints one JSON line; tests/daemon/test_unit.py runs it in a subprocess.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import platform
import sys

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
RET_ALLOW, RET_EPERM = 0x7FFF0000, 0x00050000 | 1
LD_ABS_W, JEQ_K, JSET_K, AND_K, RET_K = 0x20, 0x15, 0x45, 0x54, 0x06
PROT_WRITE, PROT_EXEC, SHM_EXEC = 2, 4, 0o100000
ARCHES = {  # audit arch, mmap, mprotect, pkey_mprotect, shmat
    "x86_64": (0xC000003E, 9, 10, 329, 30),
    "aarch64": (0xC00000B7, 222, 226, 288, 196),
}
NR, ARCH, ARG2 = 0, 4, 16 + 2 * 8  # offsets in struct seccomp_data (low 32 bits of args[2], little endian)


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def program(arch: str, allow: list[int] | None) -> list:
    audit, mmap_nr, mprotect_nr, pkey_nr, shmat_nr = ARCHES[arch]
    # (code, jump-if-true, jump-if-false, k); string jumps are labels, resolved by `assemble`.
    source: list = [
        (LD_ABS_W, 0, 0, ARCH),
        (JEQ_K, 0, "deny", audit),  # SystemCallArchitectures=native
        (LD_ABS_W, 0, 0, NR),
        (JEQ_K, "mmap", 0, mmap_nr),
        (JEQ_K, "exec", 0, mprotect_nr),
        (JEQ_K, "exec", 0, pkey_nr),
        (JEQ_K, "shmat", "allowed", shmat_nr),
        ("mmap", 0, 0, 0),
        (LD_ABS_W, 0, 0, ARG2),
        (AND_K, 0, 0, PROT_WRITE | PROT_EXEC),
        (JEQ_K, "deny", "allowed", PROT_WRITE | PROT_EXEC),
        ("exec", 0, 0, 0),
        (LD_ABS_W, 0, 0, ARG2),
        (JSET_K, "deny", "allowed", PROT_EXEC),
        ("shmat", 0, 0, 0),
        (LD_ABS_W, 0, 0, ARG2),
        (JSET_K, "deny", "allowed", SHM_EXEC),
        ("allowed", 0, 0, 0),
    ]
    if allow is None:
        source.append((RET_K, 0, 0, RET_ALLOW))
    else:
        source.append((LD_ABS_W, 0, 0, NR))
        for nr in sorted(set(allow)):  # jump offsets are 8 bits: test-and-return pairs, not one far jump
            source += [(JEQ_K, 0, 1, nr), (RET_K, 0, 0, RET_ALLOW)]
    source += [("deny", 0, 0, 0), (RET_K, 0, 0, RET_EPERM)]
    return source


def assemble(source: list) -> list[SockFilter]:
    labels, code = {}, []
    for item in source:
        if isinstance(item[0], str):
            labels[item[0]] = len(code)
        else:
            code.append(item)

    def rel(target: str | int, pc: int) -> int:
        return labels[target] - pc - 1 if isinstance(target, str) else target

    return [SockFilter(c, rel(jt, pc), rel(jf, pc), k) for pc, (c, jt, jf, k) in enumerate(code)]


def install_filter(allow: list[int] | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    insns = assemble(program(platform.machine(), allow))
    prog = SockFprog(len(insns), (SockFilter * len(insns))(*insns))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def filter_bites() -> bool:
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC).close()
    except PermissionError:
        return True
    return False


async def exercise_livekit() -> list[str]:
    import asyncio

    import numpy as np
    from livekit import rtc

    done = []
    source = rtc.AudioSource(48000, 1)
    frame = rtc.AudioFrame.create(48000, 1, 480)
    np.frombuffer(frame.data, dtype=np.int16)[:] = (np.sin(np.arange(480) / 10) * 8000).astype(np.int16)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    stream = rtc.AudioStream(track, sample_rate=48000, num_channels=1)
    for _ in range(5):
        await source.capture_frame(frame)
    event = await asyncio.wait_for(stream.__anext__(), 5)
    assert event.frame.samples_per_channel > 0
    await stream.aclose()
    done.append("audio source, track and stream")
    apm = rtc.AudioProcessingModule(echo_cancellation=True, noise_suppression=True, high_pass_filter=True,
                                    auto_gain_control=True)
    apm.process_reverse_stream(frame)
    apm.process_stream(frame)
    done.append("audio processing module")
    resampler = rtc.AudioResampler(48000, 16000, num_channels=1)
    resampler.push(frame)
    done.append("resampler")
    room = rtc.Room()
    try:
        await asyncio.wait_for(room.connect("ws://127.0.0.1:9", "x.y.z"), 10)
    except (rtc.ConnectError, TimeoutError):
        done.append("refused connect")
    await room.disconnect()
    return done


async def exercise_session_process() -> str:
    """A session child (device.session.process.host) under the same filter: fork/exec, socketpairs, the shared ring, its
    livekit import."""
    import types

    from device.audio.shared import SharedRing
    from device.config.schema import Config, LiveKitConfig
    from device.session.process.remote import RemoteSupervisor

    ring = SharedRing(4800)  # the mic ring in shared memory (memfd_create, a shared mapping) the child maps
    audio = types.SimpleNamespace(sample_rate=48000, player=types.SimpleNamespace(volume=0.5), ring_fd=ring.fd)
    config = Config(livekit=LiveKitConfig(token_source="literal", url="ws://127.0.0.1:9", token="x.y.z"))
    sup = RemoteSupervisor(config, audio, lambda event: None)  # type: ignore[arg-type]
    try:
        child = await sup.pool.prepare()
        return "ready" if child.alive else "exited"
    finally:
        await sup.aclose()


def main() -> None:
    import asyncio

    allow = [int(n) for n in sys.argv[2].split(",")] if sys.argv[1:2] == ["--allow"] else None
    install_filter(allow)
    result: dict[str, object] = {"filter_bites": filter_bites()}
    if allow is not None:  # sched_setaffinity is in @resources, which the unit denies
        try:
            os.sched_setaffinity(0, os.sched_getaffinity(0))
            result["denied_syscall_refused"] = False
        except PermissionError:
            result["denied_syscall_refused"] = True
    result["livekit"] = asyncio.run(exercise_livekit())
    result["session_process"] = asyncio.run(exercise_session_process())
    import pyaudio  # PortAudio and ALSA (their probing noise goes to stderr)

    pa = pyaudio.PyAudio()
    result["pyaudio_devices"] = pa.get_device_count()
    pa.terminate()
    print(json.dumps(result), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
