"""Two CPU processes (torchrun, gloo) train like one process on the same global batch, and evaluate alike."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

WORKER = Path(__file__).parent / "ddp_worker.py"


def _flags(train_argv, batch_size: int, eval_batch_size: int) -> list[str]:
    """2 epochs of 8 global batches of 8, length-grouped; no dropout, so that the processes' RNGs do not matter.
    32 evaluation rows in global batches of 10: the last batch is evened out with repeats, which must be dropped."""
    argv = train_argv(Path("unused"), "--epochs", "2", "--hidden-dropout", "0", "--learning-rate", "1e-3",
                      "--eval-strategy", "no", "--no-load-best-at-end", "--eval-splits", "validation", "test",
                      "--eval-batch-size", str(eval_batch_size))
    argv[argv.index("--batch-size") + 1] = str(batch_size)
    return argv[1:argv.index("--output")] + argv[argv.index("--output") + 2:]


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def test_two_processes_equal_one_process_on_the_same_global_batch(train_argv, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, str(WORKER), str(one), "--evaluate", str(one / "weights-rank0.safetensors"), "--",
          *_flags(train_argv, batch_size=8, eval_batch_size=10)])
    err = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(WORKER),
                str(two), "--evaluate", str(one / "weights-rank0.safetensors"), "--",
                *_flags(train_argv, batch_size=4, eval_batch_size=5)])
    assert "had no length" not in err  # accelerate knows the evaluation batches, so it drops the repeats

    reference = load_file(str(one / "weights-rank0.safetensors"))
    rank0, rank1 = (load_file(str(two / f"weights-rank{r}.safetensors")) for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # DDP keeps the replicas identical
    # Same examples per step, each process pads its half on its own and DDP averages the two half-batch means:
    # equal up to float rounding in the reductions.
    for k in reference:
        torch.testing.assert_close(rank0[k], reference[k], rtol=1e-5, atol=2e-6, msg=k)

    one_eval = json.loads((one / "eval-rank0.json").read_text())
    for rank in (0, 1):  # the same weights evaluated by 2 processes: the same counts, the same metrics
        two_eval = json.loads((two / f"eval-rank{rank}.json").read_text())
        for split in ("validation", "test"):
            a, b = one_eval[split], two_eval[split]
            assert a["examples"] == b["examples"] == 32
            assert a["confusion_matrix"] == b["confusion_matrix"] and a["accuracy"] == b["accuracy"]
            assert abs(a["loss"] - b["loss"]) < 1e-5
    summaries = [json.loads((two / f"summary-rank{r}.json").read_text()) for r in (0, 1)]
    assert summaries[0]["steps"] == summaries[1]["steps"] == 16
    assert summaries[0]["metrics"]["test"]["examples"] == 32
    assert summaries[0]["final"] == summaries[1]["final"]
