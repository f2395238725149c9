"""Take the README screenshots from the real window on a virtual X screen (Xvfb), after a real benchmark.

Usage (needs Xvfb and ImageMagick's `import`; llama-cpp-python built with RPC, as dev.py builds it):
.venv/bin/python docs/screenshots/take_screenshots.py
[capacity|quality] (with `capacity`, only the Capacity page's shot, after a real load test; with `quality`, only
the Quality page's, after real quality runs of three quants of the starter model and a benchmark of each).
The Hub is the tests' loopback server (no network needed); the benchmark is real (the starter model).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
WIDTH, HEIGHT = 1400, 900


def main() -> int:
    display = ":117"  # not :99, which other tools on a shared machine tend to take
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", f"{WIDTH}x{HEIGHT}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    home = Path(tempfile.mkdtemp(prefix="tokenometer-shots-"))
    try:
        time.sleep(1.0)
        os.environ.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
        return _shoot(home)
    finally:
        xvfb.terminate()
        xvfb.wait(5)
        shutil.rmtree(home, ignore_errors=True)


def _shoot(home: Path) -> int:
    from tests.models.hub.hubserver import HubServer, make_gguf

    from models.hub.starter import ensure_starter_model

    starter = ensure_starter_model()
    server = HubServer().start()
    q8 = make_gguf(home / "SmolLM2-360M-Instruct-Q8_0.gguf", name="SmolLM2 360M", n_tensors=4, tensor_elems=4096,
                   file_type=7)
    server.add_repo("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
                    {"SmolLM2-135M-Instruct.Q4_1.gguf": starter, "README.md": b"SmolLM2"}, downloads=48210, likes=96)
    server.add_repo("HuggingFaceTB/SmolLM2-360M-Instruct-GGUF", {"SmolLM2-360M-Instruct-Q8_0.gguf": q8},
                    downloads=20114, likes=41)
    server.add_repo("acme/SmolLM2-1.7B-Instruct-GGUF", {"SmolLM2-1.7B-Instruct-Q4_K_M.gguf": q8,
                                                        "SmolLM2-1.7B-Instruct-Q8_0.gguf": q8}, downloads=9876, likes=12)
    os.environ.update(HF_ENDPOINT=server.url, HF_HOME=str(home / "hf"), HF_HUB_CACHE=str(home / "hf" / "hub"),
                      TOKENOMETER_HOME=str(home / "tok"), NO_PROXY="127.0.0.1,localhost", HOME=str(home),
                      HF_HUB_DISABLE_TELEMETRY="1", TOKENOMETER_STARTER_DIR=str(starter.parent))
    os.environ.pop("HF_TOKEN", None)

    from PySide6.QtCore import QSettings

    from desktop.app import create_application
    from desktop.main_window import MainWindow
    from models.hub.download import DownloadRequest
    from models.hub.repos import repo_files

    app = create_application()
    window = MainWindow(settings=QSettings(str(home / "gui.ini"), QSettings.Format.IniFormat), start_page="benchmark")
    window.setGeometry(0, 0, WIDTH, HEIGHT)
    window.show()
    only = set(sys.argv[1:])

    def settle(seconds: float, until: object = None) -> None:
        end = time.time() + seconds
        while time.time() < end and not (callable(until) and until()):
            app.processEvents()
            time.sleep(0.02)
        for _ in range(20):
            app.processEvents()
            time.sleep(0.01)

    def shoot(name: str) -> None:
        settle(0.3)
        target = OUT / f"{name}.png"
        subprocess.run(["import", "-window", "root", "-depth", "8", str(target)], check=True)
        print(f"{target.relative_to(ROOT)}: {target.stat().st_size // 1024} KiB")

    if only == {"capacity"}:
        _capacity(window, settle, shoot)
        window.close()
        server.stop()
        return 0
    if only == {"quality"}:
        _quality(window, settle, shoot, starter, home)
        window.close()
        server.stop()
        return 0

    # A real benchmark first: a thread sweep at two depths, so Results has something to compare.
    bench = window.page("benchmark")
    settle(10, lambda: bench.models.count() > 0)
    bench.set_preset("Quick")
    bench.fields["n_depth"].setText("0, 256")
    bench.fields["n_threads"].setText("1, 2")
    bench.preset = "Custom"
    for button in bench.preset_buttons.buttons():
        button.setChecked(button.text() == "Custom")
    items = bench.run_selected()
    if not items:
        raise SystemExit(f"the benchmark was refused: {bench.error.text()}")
    settle(600, lambda: items[-1].state == "running" and len(items[-1].results) >= 2)
    shoot("benchmark")
    settle(600, lambda: all(i.state not in ("queued", "running") for i in items))

    window.show_page("results")
    results = window.pages["results"]
    settle(10, lambda: results.runs.rowCount() > 0)
    results.view.selectAll()
    settle(1.0)
    shoot("results")
    results.tabs.setCurrentWidget(results.compare_view)
    shoot("results-comparison")
    results.tabs.setCurrentIndex(0)

    window.show_page("discover")
    discover = window.pages["discover"]
    discover.search.setText("smollm2")
    settle(10, lambda: discover.repos.rowCount() == 3)
    discover.repo_view.selectRow(0)
    settle(60, lambda: discover.files.rowCount() > 0 and all(r.verdict or r.fit_error for r in discover.files.rows))
    discover.file_view.selectRow(0)
    shoot("discover")

    small = repo_files("HuggingFaceTB/SmolLM2-360M-Instruct-GGUF")
    big = repo_files("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF")
    queue = window.ctx.downloads()
    done = queue.add(DownloadRequest(small.repo_id, small.models[0].files, revision=small.commit))
    settle(30, lambda: done.state.value == "done")
    server.faults.throttle_bps = 3_000_000
    running = queue.add(DownloadRequest(big.repo_id, big.models[0].files, revision=big.commit))
    window.show_page("downloads")
    settle(30, lambda: running.progress is not None and running.progress.bytes_done > 25_000_000)
    window.pages["downloads"].view.selectRow(1)
    shoot("downloads")
    queue.pause(running.id)

    window.show_page("library")
    settle(10, lambda: window.pages["library"].table.rowCount() >= 2)
    window.pages["library"].view.selectRow(0)
    shoot("library")

    window.show_page("hardware")
    settle(120, lambda: window.pages["hardware"].info is not None)
    shoot("hardware")
    _remote_devices(window, settle, shoot)

    window.show_page("settings")
    shoot("settings")
    _capacity(window, settle, shoot)
    _quality(window, settle, shoot, starter, home)
    window.close()
    server.stop()
    return 0


def _quality(window: Any, settle: Any, shoot: Any, starter: Path, home: Path) -> None:
    """Quants of the starter made with llama.cpp's quantize API, each measured on the Quality page against the
    Q8_0 and benchmarked (tg) by the real CLI: the Pareto charts and the recommendation from those."""
    import llama_cpp as ll

    from models.cli import main as cli

    quants = {}
    for name, ftype in (("Q8_0", ll.LLAMA_FTYPE_MOSTLY_Q8_0), ("Q4_0", ll.LLAMA_FTYPE_MOSTLY_Q4_0),
                        ("Q2_K", ll.LLAMA_FTYPE_MOSTLY_Q2_K)):
        path = home / f"SmolLM2-135M-Instruct.{name}.gguf"
        params = ll.llama_model_quantize_default_params()
        params.ftype, params.allow_requantize = ftype, True
        if ll.llama_model_quantize(str(starter).encode(), str(path).encode(), params) != 0:
            raise SystemExit(f"llama.cpp could not write the {name} quant")
        quants[name] = path
    page = window.page("quality")
    window.show_page("quality")
    settle(10, lambda: page.model_box.count() > 0)
    for path in quants.values():
        page.add_model(path)
    page.text_field.setText(str(ROOT / "tests" / "models" / "bench" / "data" / "public_domain.txt"))
    page.ctx_size.setValue(128)
    page.chunks.setValue(0)
    page.reference_box.setCurrentIndex(page.reference_box.findData(str(quants["Q8_0"])))
    for model in (starter, quants["Q4_0"], quants["Q2_K"]):
        page.model_box.setCurrentIndex(page.model_box.findData(str(model)))
        page.start()
        settle(600, lambda: page.run_button.isEnabled())
        if not page.status.text().startswith("Done."):
            raise SystemExit(f"the quality run failed: {page.status.text()}")
    if cli(["bench", str(starter), *map(str, quants.values()), "-p", "64", "-n", "32", "-r", "2", "-o", "json"]):
        raise SystemExit("the benchmark of the quants failed")
    page.min_tg.setValue(0.0)  # re-reads the store
    settle(30, lambda: page.choice is not None and len(page.choice.points) == 4)
    # The speed asked for: the next half t/s above the slowest quant's, so the sentence has a trade-off to make.
    wanted = math.floor(min(p.tg for p in page.choice.points) * 2 + 1) / 2
    page.min_tg.setValue(wanted)
    settle(30, lambda: f"{wanted:g} t/s" in page.recommendation.text())
    shoot("quality")
    # The same prompt answered by the starter and its Q2_K, side by side as they streamed.
    if cli(["answers", str(starter), str(quants["Q2_K"]), "--prompt", "Explain in three sentences why the sky is "
            "blue.", "--temp", "0.7", "-n", "80", "-s", "1234", "-t", "2"]):
        raise SystemExit("the answers run failed")
    past = page.past_answers
    page.tabs.setCurrentWidget(past)
    past.reload()  # the CLI wrote to the store behind the window's back: read it again, as a page change would
    settle(30, lambda: past.table.rowCount() >= 1)
    if past.table.rowCount() < 1:
        raise SystemExit("the past answers did not appear")
    past.view.selectRow(0)
    past.open_button.click()
    settle(2.0)
    shoot("quality-answers")


def _remote_devices(window: Any, settle: Any, shoot: Any) -> None:
    """The Hardware page's remote devices: a real `tokenometer rpc-server` on loopback and a port nobody listens on."""
    from tests.models.machine.test_rpc import _free_port, servers

    page = window.pages["hardware"]
    with servers(1) as (server,):
        box = page.remote
        for endpoint in (server.endpoint, f"127.0.0.1:{_free_port()}"):
            if refusal := box.state.add(endpoint):
                raise SystemExit(f"the remote device was refused: {refusal}")
        settle(60, lambda: not box.state.checking)
        settle(1.0)
        shoot("hardware-remote")
        for endpoint in list(box.state.endpoints):  # the next pages measure this PC alone
            box.state.remove(endpoint)


def _capacity(window: Any, settle: Any, shoot: Any) -> None:
    """A real load test of the starter model (short requests, 1, 2 and 4 people at once) on the Capacity page."""
    from dataclasses import replace

    from models.settings import load_settings, save_settings

    # No energy sensor on a virtual screen's machine: a plausible desktop's watts, so the cost line has a figure.
    save_settings(replace(load_settings(), system_power_watts=65.0))
    window.show_page("capacity")
    page = window.pages["capacity"]
    settle(10, lambda: page.model.count() > 0)
    page.profile.setCurrentText("tiny")
    page.concurrency.setText("1, 2, 4")
    page.requests.setText("4")
    page.threads.setText("2")
    page.all_levels.setChecked(True)  # every level drawn, past the one that misses the SLO
    # Limits a small, shared two-core machine meets for a person or two, so the levels fall on both sides.
    page.slo_ttft.setText("5")
    page.slo_tpot.setText("1000")
    page.run()
    if page._item is None:
        raise SystemExit(f"the load test was refused: {page.error.text()}")
    settle(900, lambda: page._item.state.finished)
    page.tabs.setCurrentIndex(0)
    shoot("capacity")


if __name__ == "__main__":
    sys.exit(main())
