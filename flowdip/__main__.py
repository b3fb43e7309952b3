"""`python -m flowdip`."""

import sys

from .cli import main


sys.exit(main())
