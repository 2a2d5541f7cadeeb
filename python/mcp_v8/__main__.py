"""``python -m mcp_v8``: same as the ``mcp-v8`` command."""

import sys

from .cli import main

sys.exit(main())
