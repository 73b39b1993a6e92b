"""``python -m retune``: see :mod:`retune.cli`."""

import sys

from retune.cli import main

sys.exit(main())
