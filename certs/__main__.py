"""``python -m certs``: create the development CA and certificates."""

from __future__ import annotations

import sys

from certs.authority import main

if __name__ == "__main__":
    sys.exit(main())
