"""`python -m codectx_client ...` is the `codectx-client` command."""

import sys

from codectx_client.cli import main

sys.exit(main())
