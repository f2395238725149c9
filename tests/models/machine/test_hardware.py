"""The hardware probe on this (GPU-less) machine for real; NVML is faked only to reach the GPU-present path."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from models.machine import hardware
from models.machine.hardware import (
    _ARM_FLAGS,
    _MAC_FLAGS,
    _X86_FLAGS,
    llama_build,
    machine_fingerprint,
    probe_amd,
    probe_hardware,
    probe_nvidia,
)

KNOWN_FLAGS = set(_X86_FLAGS.values()) | set(_ARM_FLAGS.values()) | set(_MAC_FLAGS.values())


def test_probe_this_machine() -> None:
    info = probe_hardware(with_llama=False)
    assert info.cpu.model and info.cpu.logical_cores >= info.cpu.physical_cores >= 1
    assert set(info.cpu.flags) <= KNOWN_FLAGS
    assert all(size > 0 for size in info.cpu.caches.values())
    assert info.ram_total >= info.ram_available > 0
    assert info.disks and all(d.total >= d.free >= 0 for d in info.disks)
    json.dumps(info.to_json())  # the CLI's --json must never fail on the dataclass


def test_no_nvml_is_a_normal_answer() -> None:
    # Real: this machine has no NVIDIA driver, so NVML fails to initialise (or the library is missing).
    notes: list[str] = []
    gpus = probe_nvidia(notes)
    if gpus:
        pytest.skip("an NVIDIA GPU is present here; the no-GPU path cannot be exercised for real")
    assert notes and ("NVML" in notes[0] or "nvidia-ml-py" in notes[0])


class FakeNVML(types.ModuleType):
    """Stands in for pynvml: no GPU machine is available to these tests."""

    def __init__(self, *, fail_count: bool = False) -> None:
        super().__init__("pynvml")
        self.fail_count, self.shutdown = fail_count, False

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: self.shutdown = True
    def nvmlSystemGetDriverVersion(self) -> bytes: return b"550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        if self.fail_count:
            raise RuntimeError("GPU is lost")
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int: return index
    def nvmlDeviceGetName(self, handle: int) -> Any: return [b"NVIDIA H200", "NVIDIA L4"][handle]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return types.SimpleNamespace(total=(handle + 1) * 2**34, free=2**33, used=0)

    def nvmlDeviceGetPowerManagementLimit(self, handle: int) -> int:
        if handle == 1:
            raise RuntimeError("Not Supported")
        return 700_000


def test_nvml_gpu_present_path(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNVML()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    notes: list[str] = []
    gpus = probe_nvidia(notes)
    assert [(g.name, g.memory_total, g.memory_free, g.driver) for g in gpus] == [
        ("NVIDIA H200", 2**34, 2**33, "550.54.15"), ("NVIDIA L4", 2**35, 2**33, "550.54.15")]
    assert gpus[0].power_limit_w == 700.0 and gpus[1].power_limit_w == 0.0
    assert any("power limit unknown" in n for n in notes) and fake.shutdown


def test_nvml_failing_midway_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(fail_count=True))
    notes: list[str] = []
    assert probe_nvidia(notes) == [] and any("GPU is lost" in n for n in notes)


def test_amd_gpus_from_sysfs(tmp_path: Path) -> None:
    # A real directory laid out like /sys/class/drm with the amdgpu driver's files.
    for card, vendor, total in (("card0", "0x1002", "17163091968"), ("card1", "0x8086", "0"),
                                ("card0-DP-1", "0x1002", "1")):
        device = tmp_path / card / "device"
        device.mkdir(parents=True)
        (device / "vendor").write_text(vendor + "\n")
        (device / "mem_info_vram_total").write_text(total + "\n")
        (device / "mem_info_vram_used").write_text("1073741824\n")
    (tmp_path / "card0" / "device" / "product_name").write_text("Radeon RX 7800 XT\n")
    notes: list[str] = []
    gpus = probe_amd(notes, drm_root=tmp_path)
    assert [(g.name, g.memory_total, g.memory_free, g.vendor) for g in gpus] == [
        ("Radeon RX 7800 XT", 17163091968, 17163091968 - 2**30, "AMD")]


def test_llama_build_asked_in_a_child_process() -> None:
    if importlib.util.find_spec("llama_cpp") is None:  # find_spec: importing it here would spoil the check
        pytest.skip("llama-cpp-python is not installed")
    build = llama_build()
    assert not build.error, build.error
    assert "CPU" in build.backends and any(d["type"] == "CPU" for d in build.devices)
    assert build.llama_cpp_python_version and "CPU :" in build.system_info
    # The probe never loads llama.cpp into the asking process; asked in a fresh interpreter, since other tests
    # in this one may have loaded it themselves.
    check = ("import sys; from models.machine.hardware import llama_build; b = llama_build(); "
             "assert not b.error, b.error; sys.exit(1 if 'llama_cpp' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", check], cwd=Path(__file__).resolve().parents[3]).returncode == 0


def test_llama_probe_failure_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    llama_build.cache_clear()
    monkeypatch.setattr(hardware.sys, "executable", "/bin/false")
    try:
        info = probe_hardware()
        assert info.llama is not None and "llama.cpp probe failed" in info.llama.error
        assert any("llama.cpp probe failed" in n for n in info.notes)
    finally:
        llama_build.cache_clear()


def test_fingerprint_keys_and_stable_id() -> None:
    first, second = machine_fingerprint(), machine_fingerprint()
    assert set(first) == {"machine_id", "os", "python", "cpu", "cpu_cores", "ram_total", "gpus", "gpu_driver",
                          "backends", "llama_cpp_python_version", "llama_cpp_commit", "system_info"}
    assert first["machine_id"] == second["machine_id"] and len(first["machine_id"]) == 16
    json.dumps(first)


def test_cli_hardware_json(capsys: pytest.CaptureFixture[str]) -> None:
    from models.cli import main

    assert main(["hardware", "--json", "--no-llama"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cpu"]["logical_cores"] >= 1 and data["llama"] is None


def test_cli_fit_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from models.cli import main
    from tests.models.gguf.factory import Shape, write_model

    path = write_model(tmp_path / "m.gguf", Shape())
    assert main(["fit", str(path), "--ctx", "2048", "-ctk", "q8_0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"]["n_ctx"] == 2048 and data["model"]["architecture"] == "llama"
    assert data["verdict"]["verdict"] in ("gpu", "partial", "cpu")
    assert main(["fit", str(path)]) == 0
    assert "Verdict" in capsys.readouterr().out
    assert main(["fit", str(tmp_path / "missing.gguf")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["fit", "just-a-name"]) == 1
    assert "not REPO/FILE" in capsys.readouterr().err
