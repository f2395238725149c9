"""Download benchmark on the loopback Hub: Tokenometer vs `hf download` throughput, and bytes re-sent after a kill.

Usage: .venv/bin/python benchmarks/download_bench.py [--size-mb 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.models.hub.hubserver import HubServer  # noqa: E402 - the same server the tests use

log = logging.getLogger(__name__)

REPO = "bench/Bench-GGUF"
NAME = "bench-Q4_K_M.gguf"


def _env(server: HubServer, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_ENDPOINT=server.url, HF_HOME=str(home / "hf"), HF_HUB_CACHE=str(home / "hf" / "hub"),
               TOKENOMETER_HOME=str(home / "tok"), HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1,localhost",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    env.pop("HF_TOKEN", None)
    return env


def _run(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _tokenometer(server: HubServer, scratch: Path) -> float:
    home = Path(tempfile.mkdtemp(dir=scratch))
    try:
        return _run([sys.executable, "-m", "models.cli", "download", REPO, NAME], _env(server, home))
    finally:
        shutil.rmtree(home)


def _hf(server: HubServer, scratch: Path) -> float:
    home = Path(tempfile.mkdtemp(dir=scratch))
    try:
        return _run([str(Path(sys.executable).with_name("hf")), "download", REPO, NAME], _env(server, home))
    finally:
        shutil.rmtree(home)


def _in_process(server: HubServer, scratch: Path, rounds: int, size: int) -> tuple[list[float], list[float]]:
    """The transfer alone: `download()` vs `hf_hub_download()` (what `hf download` calls), in this process."""
    os.environ.update(_env(server, scratch))  # before huggingface_hub is imported: it reads HF_ENDPOINT once
    from huggingface_hub import constants, hf_hub_download

    from models.hub.download import DownloadRequest, download
    from models.hub.repos import RemoteFile

    ours, theirs = [], []
    for _ in range(rounds):
        for mine in (True, False):
            home = Path(tempfile.mkdtemp(dir=scratch))
            os.environ["TOKENOMETER_HOME"] = str(home / "tok")
            constants.HF_HUB_CACHE = str(home / "hub")
            start = time.perf_counter()
            if mine:
                sha = server.repos[REPO].files[NAME].sha256
                download(DownloadRequest(REPO, (RemoteFile(NAME, size, sha),)))
            else:
                hf_hub_download(REPO, NAME, cache_dir=home / "hub")
            (ours if mine else theirs).append(time.perf_counter() - start)
            shutil.rmtree(home)
    return ours, theirs


def _kill_and_resume(server: HubServer, scratch: Path, size: int) -> tuple[int, int, int]:
    home = Path(tempfile.mkdtemp(dir=scratch))
    env = _env(server, home)
    command = [sys.executable, "-m", "models.cli", "download", REPO, NAME]
    server.faults.throttle_bps = 100_000_000  # so ~50% is reachable before the end
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_dir = home / "tok" / "downloads"
    while child.poll() is None:
        parts = list(state_dir.glob("*.part")) if state_dir.exists() else []
        if parts and parts[0].stat().st_size >= size // 2:
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    kept = list(state_dir.glob("*.part"))[0].stat().st_size
    server.faults.throttle_bps = None
    before = len(server.file_requests(NAME))
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = server.file_requests(NAME)[before:]
    start = min(r.range_start or 0 for r in resumed)
    sent = sum(r.bytes_sent for r in resumed)
    shutil.rmtree(home)
    return kept, max(0, kept - start), sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokenometer-dlbench-") as tmp:
        scratch = Path(tmp)
        blob = scratch / NAME
        with blob.open("wb") as handle:  # random bytes: nothing downstream parses them
            for _ in range(args.size_mb):
                handle.write(os.urandom(1 << 20))
        size = blob.stat().st_size
        with HubServer() as server:
            server.add_repo(REPO, {NAME: blob})
            print(f"loopback Hub {server.url}, file {size / 1e6:.0f} MB, {args.rounds} rounds alternating")
            ours, theirs = [], []
            for index in range(args.rounds):
                ours.append(_tokenometer(server, scratch))
                theirs.append(_hf(server, scratch))
                print(f"round {index + 1}: tokenometer {size / ours[-1] / 1e6:7.1f} MB/s ({ours[-1]:.2f} s)   "
                      f"hf download {size / theirs[-1] / 1e6:7.1f} MB/s ({theirs[-1]:.2f} s)")
            best_ours, best_theirs = min(ours), min(theirs)
            mean_ours, mean_theirs = sum(ours) / len(ours), sum(theirs) / len(theirs)
            print(f"best:  tokenometer {size / best_ours / 1e6:.1f} MB/s, hf download {size / best_theirs / 1e6:.1f} MB/s"
                  f", ratio {best_theirs / best_ours:.3f}")
            print(f"mean:  tokenometer {size / mean_ours / 1e6:.1f} MB/s, hf download {size / mean_theirs / 1e6:.1f} MB/s"
                  f", ratio {mean_theirs / mean_ours:.3f}  (goal >= 0.95; wall time of each CLI, start-up included)")
            ours, theirs = _in_process(server, scratch, args.rounds, size)
            for index, (mine, hf) in enumerate(zip(ours, theirs)):
                print(f"in-process round {index + 1}: download() {size / mine / 1e6:7.1f} MB/s   "
                      f"hf_hub_download() {size / hf / 1e6:7.1f} MB/s")
            print(f"in-process mean: ratio {sum(theirs) / sum(ours):.3f} (transfer + sha256 for Tokenometer, "
                  "transfer only for hf_hub_download)")
            kept, resent, sent = _kill_and_resume(server, scratch, size)
            print(f"kill at ~50%: {kept} bytes on disk; resume re-sent {resent} bytes ({100 * resent / kept:.3f}% of "
                  f"what was on disk; goal < 1%), sent {sent} bytes in all to finish")
    return 0


if __name__ == "__main__":
    sys.exit(main())
