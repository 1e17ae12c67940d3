"""`textcls train ARGS` that sleeps after logging each optimizer step from step N on, so that a test can kill it
at a known point: `python tests/slow_train.py N SECONDS train ARGS...`."""

import sys
import time

from textcls.cli import main
from textcls.train.loop import Trainer

after, pause = int(sys.argv[1]), float(sys.argv[2])
log_train = Trainer._log_train


def log_then_sleep(self, *args):
    log_train(self, *args)
    if self.state.step >= after:
        time.sleep(pause)


Trainer._log_train = log_then_sleep
sys.exit(main(sys.argv[3:]))
