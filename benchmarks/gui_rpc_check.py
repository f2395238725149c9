"""GUI figure: the longest event-loop stall while the remote-devices box checks three servers (a real
`tokenometer rpc-server` on 127.0.0.1, a closed port, and a port that accepts and never answers), against the same
probes called on the GUI thread.

Usage: .venv/bin/python benchmarks/gui_rpc_check.py [--reps 3]

A 5 ms QTimer records the gaps between its ticks from the Check until every server has its answer; the blocking
figure is the wall time of check_endpoints() on the GUI thread (what the window would freeze for).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    os.environ["TOKENOMETER_HOME"] = tempfile.mkdtemp(prefix="tk-rpc-gui-")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, QTimer

    from desktop.app import create_application
    from desktop.context import AppContext
    from desktop.remote_devices import RemoteDevicesBox
    from models.machine.rpc_known import check_endpoints
    from tests.models.machine.test_rpc import _free_port, servers

    create_application()
    ctx = AppContext()
    box = RemoteDevicesBox(ctx)
    box.show()
    with servers(1) as (server,), socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoints = [server.endpoint, f"127.0.0.1:{_free_port()}", f"127.0.0.1:{silent.getsockname()[1]}"]
        while not box.state.loaded:
            QCoreApplication.processEvents()
        for endpoint in endpoints:
            box.state.endpoints.append(endpoint)  # the list alone: the check below is the one measured
        box.state.changed.emit()
        stalls, walls, blocking = [], [], []
        for _ in range(args.reps):
            gaps: list[float] = []
            last = [time.perf_counter()]

            def tick() -> None:
                now = time.perf_counter()
                gaps.append(now - last[0])
                last[0] = now

            timer = QTimer()
            timer.timeout.connect(tick)
            timer.start(5)
            started = time.perf_counter()
            box.check_button.click()
            while box.state.checking or len(box.state.checks) < 3:
                QCoreApplication.processEvents()
                time.sleep(0.001)
            walls.append(time.perf_counter() - started)
            timer.stop()
            stalls.append(max(gaps) * 1000)
            started = time.perf_counter()
            check_endpoints(endpoints)
            blocking.append(time.perf_counter() - started)
        states = [box.table.data(box.table.index(row, 1)) for row in range(3)]
    print(f"servers: {', '.join(f'{e} {s}' for e, s in zip(endpoints, states))}")
    print(f"check, all three: {statistics.median(walls):.2f} s (median of {args.reps})")
    print(f"longest event-loop stall during the check: {statistics.median(stalls):.1f} ms "
          f"(median of {args.reps}; max {max(stalls):.1f} ms)")
    print(f"the same probes on the GUI thread would freeze it for {statistics.median(blocking):.2f} s")


if __name__ == "__main__":
    main()
