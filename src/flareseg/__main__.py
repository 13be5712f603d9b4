"""``python -m flareseg``: the ``flareseg`` command."""

import sys

from flareseg.cli.main import main

sys.exit(main())
