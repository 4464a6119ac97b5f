"""Naming the process that holds a busy ALSA device, from the kernel's /proc/asound records (a fake /proc here;
the VM suite checks the real one with arecord holding the loopback card)."""

from __future__ import annotations

from pathlib import Path

from device.audio.holders import busy_sentence, holders


def fake_proc(root: Path, card: int, pcm: str, owners: dict[int, int | None], comms: dict[int, str]) -> Path:
    for sub, pid in owners.items():
        d = root / "asound" / f"card{card}" / pcm / f"sub{sub}"
        d.mkdir(parents=True)
        body = "closed\n" if pid is None else f"state: RUNNING\nowner_pid   : {pid}\ntrigger_time: 1.0\n"
        (d / "status").write_text(body)
    for pid, comm in comms.items():
        (root / str(pid)).mkdir()
        (root / str(pid) / "comm").write_text(comm + "\n")
    return root


def test_the_holder_of_a_capture_device_is_named_from_its_owner_pid(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 1, "pcm0c", {0: 4242, 1: None}, {4242: "arecord"})
    assert holders("seeed-2mic-voicecard: bcm2835-i2s-wm8960-hifi wm8960-hifi-0 (hw:1,0)", "input", proc) == [
        "process 4242 (arecord)"]
    assert holders("hw:CARD=1,DEV=0", "input", proc) == ["process 4242 (arecord)"]


def test_a_process_hidden_from_us_is_named_by_its_number(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 0, "pcm0c", {0: 77}, {})  # ProtectProc=invisible hides other users' processes
    assert holders("hw:0,0", "input", proc) == ["process 77"]


def test_the_direction_card_and_device_are_respected(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 0, "pcm1p", {0: 9}, {9: "aplay"})
    assert holders("hw:0,1", "input", proc) == []
    assert holders("hw:0,0", "output", proc) == []
    assert holders("hw:0,1", "output", proc) == ["process 9 (aplay)"]


def test_names_that_are_not_hw_devices_or_free_devices_have_no_holder(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 0, "pcm0c", {0: None}, {})
    assert holders("default", "input", proc) == []
    assert holders("hw:0,0", "input", proc) == []
    assert busy_sentence("hw:0,0", "input", proc) is None


def test_the_busy_sentence_says_what_to_do(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 2, "pcm0c", {0: 5}, {5: "python3"})
    sentence = busy_sentence("USB PnP Sound Device: Audio (hw:2,0)", "input", proc)
    assert sentence == ("held by process 5 (python3); stop it, or share the card through dsnoop/dmix "
                        "(scripts/install.sh --alsa-card CARD)")
