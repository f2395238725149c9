"""The `tokenometer` console command: no arguments opens the app, a subcommand runs headless without Qt."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        # Headless: Qt is never imported on this path.
        from models.cli import main as cli_main

        return cli_main(args)
    from desktop.system_libs import check_gui_libraries

    # Qt's own report of a missing X11 library names the wrong one and aborts: say it plainly, before Qt loads.
    problem = check_gui_libraries(sys.argv[:1])
    if problem:
        print(problem, file=sys.stderr)
        return 1
    from desktop.app import run_app

    return run_app()


if __name__ == "__main__":
    sys.exit(main())
