"""``python -m refquant.cli``: the ``refquant`` command."""

import sys

from .commands import main

sys.exit(main())
