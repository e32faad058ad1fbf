"""``python -m kbroker`` runs the ``kbroker`` command."""

import sys

from kbroker.cli import main

sys.exit(main())
