"""`python -m codectxd ...` is the `codectxd` command."""

import sys

from codectxd.cli import main

sys.exit(main())
