"""`python -m vlmlab.cli ...`: the `vlmlab` command."""

import sys

from vlmlab.cli import main

sys.exit(main())
