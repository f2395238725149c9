"""The headless commands (`tokenometer bench|batched|load|quality|search|files|download|models|hardware|fit|runs|compare|report|import|rpc-server|rpc-probe`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from models import __version__
from models.errors import TokenometerError
from models.text import printable

log = logging.getLogger(__name__)

# Each module adds its own subcommands; one module per area keeps this file from growing.
from models.cli import answers as _answers  # noqa: E402
from models.cli import batched as _batched  # noqa: E402
from models.cli import bench as _bench  # noqa: E402
from models.cli import hub as _hub  # noqa: E402
from models.cli import load as _load  # noqa: E402
from models.cli import machine as _machine  # noqa: E402
from models.cli import quality as _quality  # noqa: E402
from models.cli import results as _results  # noqa: E402
from models.cli import rpc as _rpc  # noqa: E402

_COMMAND_MODULES = (_bench, _batched, _load, _quality, _answers, _hub, _machine, _results, _rpc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenometer",
        description="Which open model can you really run here, how fast, in how much memory, at what cost. "
                    "With no command, the desktop app opens.")
    parser.add_argument("--version", action="version", version=f"tokenometer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one headless command; returns the process exit code (0 ok, 1 failed, 2 usage, 130 cancelled)."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # huggingface_hub prints its warnings through a handler of its own: passed on to ours too, each showed twice.
    logging.getLogger("huggingface_hub").propagate = False
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
    except TokenometerError as error:
        print(printable(f"error: {error}", newlines=True), file=sys.stderr)  # messages quote names from outside
        return 1


if __name__ == "__main__":
    sys.exit(main())
