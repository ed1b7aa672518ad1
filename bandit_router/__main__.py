"""``python -m bandit_router``: the same as the ``bandit-router`` command."""

import sys

from bandit_router.cli import main

sys.exit(main())
