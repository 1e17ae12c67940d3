"""`python -m textcls ...`: the CLI, also for launchers that start a module (`torchrun -m textcls train ...`)."""

import sys

from textcls.cli import main

sys.exit(main())
