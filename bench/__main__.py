"""``python -m bench``: every benchmark of the suite (bench/suite.py); ``make bench`` runs it."""

import sys

from bench.suite import main

sys.exit(main())
