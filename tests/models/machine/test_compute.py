"""The compute peak: the CPU GEMM really runs (small matrices); NVIDIA GPUs are simulated through NVML (no GPU
on the test machine: FakeNVML stands in for pynvml, names as NVML reports them)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from typing import Any

import pytest

from models.cli import main
from models.machine import bandwidth as bw
from models.machine.bandwidth import MachineBandwidth, machine_bandwidth, nvidia_bandwidth
from models.machine.compute import CpuCompute, fmt_flops, gpu_fp16_flops, measure_compute, measure_cpu_compute
from models.machine.quiet import QUIET_CORES
from tests.models.machine.test_bandwidth import FakeNVML

MIB = 1024 * 1024


def test_cpu_gemm_gives_finite_positive_flops() -> None:
    result = measure_cpu_compute(n=256, repeats=3, min_seconds=0)
    assert result.n == 256 and result.repeats == len(result.samples) == 3
    assert result.flops == max(result.samples) and all(math.isfinite(s) and s > 0 for s in result.samples)
    # A 256^3 product is 33.5 MFLOP: faster than 1 PFLOP/s would mean it was not computed at all.
    assert 1e8 < result.flops < 1e15
    assert result.threads >= 0 and result.seconds > 0 and result.measured_at


def test_cpu_gemm_window_and_bad_options() -> None:
    result = measure_cpu_compute(n=128, repeats=1, min_seconds=0.2)
    assert result.repeats > 1 and result.seconds >= 0.2  # the best of many over the window, not of one
    for options, match in ((dict(n=8), "n must be at least 64"), (dict(repeats=0), "repeats at least 1"),
                           (dict(min_seconds=3, max_seconds=1), "between 0 and max_seconds")):
        with pytest.raises(ValueError, match=match):
            measure_cpu_compute(**options)  # type: ignore[arg-type]


def test_a_program_using_the_cpu_all_along_is_waited_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real competitor: a process burning a core. The window runs to max_seconds looking for a quiet stretch
    # and keeps how busy the others stayed.
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        busy = measure_cpu_compute(n=256, repeats=2, min_seconds=0.3, max_seconds=1.2)
    finally:
        burner.kill()
        burner.wait()
    assert busy.others_cores >= QUIET_CORES and busy.seconds >= 1.2 and busy.flops > 0
    limits = MachineBandwidth()
    monkeypatch.setattr(bw, "measure_compute", lambda: busy)  # the busy measurement above, as the store gets it
    bw._measure_compute(limits)
    assert limits.compute is busy and limits.notes[0].startswith("other programs used ")
    assert measure_cpu_compute(n=256, repeats=2, min_seconds=0).others_cores == -1  # no window: not read


def test_kernel_pin_is_left_out_of_the_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    # OPENBLAS_CORETYPE=Haswell (set in some containers, this one included) holds an AVX-512 CPU to AVX2
    # kernels: the peak is measured in a child process without it; with no pin, in this process.
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    child = measure_compute(n=256, repeats=2, min_seconds=0)
    assert child.blas.endswith("(without OPENBLAS_CORETYPE=Haswell)") and 1e8 < child.flops < 1e15
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    here = measure_compute(n=256, repeats=2, min_seconds=0)
    assert "without" not in here.blas and here.flops > 0
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")  # the child cannot start: measured here
    assert measure_compute(n=256, repeats=2, min_seconds=0).flops > 0


@pytest.mark.parametrize("name, flops", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA L40S", 362e12), ("NVIDIA L4", 121e12),
    ("Tesla T4", 65e12), ("NVIDIA GeForce RTX 4090", 330e12), ("NVIDIA GeForce RTX 3090 Ti", 160e12),
    ("NVIDIA GeForce RTX 3090", 142e12), ("NVIDIA GeForce GTX 1080", 0.0), ("", 0.0),
])
def test_gpu_peak_from_the_data_sheet_table_or_not_known(name: str, flops: float) -> None:
    assert gpu_fp16_flops(name) == flops


def test_nvml_gpus_carry_their_peak_or_say_not_known() -> None:
    notes: list[str] = []
    gpus = nvidia_bandwidth(notes, nvml=FakeNVML())  # simulated: an H100 SXM and an RTX 4090
    assert [g.flops for g in gpus] == [989e12, 330e12]
    limits = MachineBandwidth(gpus=gpus)
    assert limits.gpu_flops == 989e12 and limits.cpu_flops == 0
    assert limits.compute_summary() == "CPU not measured; GPU 0 989 TFLOPS FP16 (data sheet); " \
                                       "GPU 1 330 TFLOPS FP16 (data sheet)"
    gpus[1].flops = 0.0
    assert "GPU 1 FP16 peak not known" in MachineBandwidth(gpus=gpus).compute_summary()


def test_fmt_flops() -> None:
    assert fmt_flops(0) == "not measured" and fmt_flops(250e9) == "250 GFLOPS"
    assert fmt_flops(2.5e12) == "2.5 TFLOPS" and fmt_flops(989e12) == "989 TFLOPS"


def test_measured_and_stored_with_the_bandwidth() -> None:
    first = machine_bandwidth(buffer_bytes=16 * MIB, repeats=2, threads=1, min_seconds=0)
    assert first.compute is not None and first.cpu_flops > 0
    again = machine_bandwidth(measure=False)
    assert again.compute is not None and again.cpu_flops == first.cpu_flops  # the stored figure
    assert json.loads(bw.cache_path().read_text())["compute"]["flops"] == first.cpu_flops


def test_stored_before_compute_existed_is_measured_only_when_asked() -> None:
    machine_bandwidth(buffer_bytes=16 * MIB, repeats=2, threads=1, min_seconds=0)
    data: dict[str, Any] = json.loads(bw.cache_path().read_text())
    del data["compute"]  # as a measurement stored by the previous version
    bw.cache_path().write_text(json.dumps(data))
    assert machine_bandwidth(measure=False).compute is None  # "not measured", never an error
    filled = machine_bandwidth()
    assert filled.compute is not None and filled.cpu is not None
    assert filled.cpu.read == data["cpu"]["read"]  # the bandwidth kept, only the compute peak added
    assert "compute" in json.loads(bw.cache_path().read_text())


def test_hardware_command_shows_the_compute_peak(capsys: pytest.CaptureFixture[str]) -> None:
    stored = machine_bandwidth(buffer_bytes=16 * MIB, repeats=2, threads=1, min_seconds=0)
    assert stored.compute is not None
    assert main(["hardware", "--no-llama"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("Compute "))
    assert line == f"Compute    CPU {fmt_flops(stored.compute.flops)} f32 GEMM ({stored.compute.threads or '?'} " \
                   "threads)"
    bw.cache_path().unlink()
    assert main(["hardware", "--no-llama", "--no-bandwidth"]) == 0  # nothing stored, nothing measured
    assert "Compute    CPU not measured" in capsys.readouterr().out


def test_compute_record_round_trips() -> None:
    value = MachineBandwidth(compute=CpuCompute(flops=2e11, threads=2, n=256, repeats=1, samples=[2e11]))
    assert MachineBandwidth.from_json(json.loads(json.dumps(value.to_json()))) == value
