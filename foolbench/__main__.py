"""``python -m foolbench``: the same as the ``foolbench`` command (and ``python -m foolbench.cli``)."""

import sys

from foolbench.cli import main

sys.exit(main())
