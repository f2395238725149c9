"""Check this machine's energy sensors: which ones EnergyMeter reads, and a reading over a short CPU load."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.machine.energy import EnergyMeter, rapl_zones  # noqa: E402

log = logging.getLogger(__name__)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to keep one core busy")
    parser.add_argument("--watts", type=float, default=None, help="fallback watts where no sensor is readable")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG)
    print("RAPL zones:", [z.name for z in rapl_zones()])
    meter = EnergyMeter(fallback_watts=args.watts, sample_interval_s=0.05)
    print("meter:", meter.describe())
    meter.start()
    end, spins = time.monotonic() + args.seconds, 0
    while time.monotonic() < end:  # a busy loop, so the package draws more than idle power
        spins += 1
    reading = meter.stop()
    print(json.dumps(None if reading is None else {
        "joules": reading.joules, "seconds": reading.seconds, "watts": reading.watts, "source": reading.source,
        "is_estimate": reading.is_estimate, "parts": reading.parts}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
