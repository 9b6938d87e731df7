"""``python -m bytecache``: see ``bytecache._cli``."""

import sys

from bytecache._cli import main

sys.exit(main())
