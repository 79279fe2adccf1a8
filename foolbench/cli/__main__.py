"""``python -m foolbench.cli``: the same as the ``foolbench`` command."""

import sys

from foolbench.cli import main

sys.exit(main())
