"""`python -m models.cli`: the headless commands without the desktop launcher."""

import sys

from models.cli import main

sys.exit(main())
