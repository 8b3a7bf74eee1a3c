"""``python -m bubu``: the ``bubu`` command (``bubu._cli.main``)."""

import sys

from bubu._cli import main

sys.exit(main())
