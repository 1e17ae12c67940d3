"""`textcls sweep`: one training run per combination of settings, compared in a table and one plot.

The practice's warmup experiment is `textcls sweep --set warmup_steps=1,100,500 ...`. The sweep folder holds one
run directory per combination, sweep.json (the grid and each run's results, rewritten after every run, so an
interrupted sweep keeps what it finished), sweep.md (the comparison table) and sweep.png (the curves).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from textcls.config import RunConfig, find_key, parse_value
from textcls.errors import TextclsError
from textcls.io import atomic_write_text
from textcls.train.loop import Trainer, train

log = logging.getLogger("textcls")

SWEEP_JSON, SWEEP_MD, SWEEP_PNG = "sweep.json", "sweep.md", "sweep.png"
FIXED_PER_RUN = ("train.output", "train.name")  # the sweep gives each run its own


def parse_sweep(specs: list[str]) -> dict[str, list]:
    """["warmup_steps=1,100,500", ...] → {"train.warmup_steps": [1, 100, 500], ...}, each value typed and checked
    as a config value (a list value joins its items with '+': eval_splits=test+validation)."""
    grid: dict[str, list] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise TextclsError(f"--set {spec!r}: write KEY=V1,V2,... (e.g. --set warmup_steps=1,100,500)")
        qualified = ".".join(find_key(key.strip()))
        if qualified in grid:
            raise TextclsError(f"--set names {qualified} twice; give all its values in one --set")
        if qualified in FIXED_PER_RUN:
            raise TextclsError(f"--set cannot vary {qualified}: each run gets its own folder in the sweep's --output")
        typed = [parse_value(qualified, v.strip()) for v in values.split(",")]
        repeated = [v for i, v in enumerate(typed) if v in typed[:i]]
        if repeated:
            raise TextclsError(f"--set {spec!r} gives the value {repeated[0]!r} twice; give each value once")
        grid[qualified] = typed
    if not grid:
        raise TextclsError("a sweep needs at least one --set KEY=V1,V2,...")
    return grid


def _short(key: str) -> str:
    return key.split(".")[-1]


def run_names(combos: list[dict]) -> list[str]:
    """A folder name per combination, such as `warmup_steps=100,learning_rate=0.001`; characters that are unsafe
    in a path (a model folder's slashes) become '-'."""
    names: list[str] = []
    for i, combo in enumerate(combos, 1):
        name = re.sub(r"[^A-Za-z0-9._=,+-]+", "-", ",".join(f"{_short(k)}={v}" for k, v in combo.items()))
        names.append(name if name not in names else f"{name}-{i}")
    return names


def _check_output(out: Path) -> None:
    if (out / SWEEP_JSON).exists():
        raise TextclsError(f"{str(out)!r} already holds a sweep ({SWEEP_JSON}); choose another --output")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TextclsError(f"--output {str(out)!r} is not an empty folder; choose a new one for the sweep")


def _run_result(name: str, combo: dict, summary: dict, records: list[dict], metric: str, seconds: float) -> dict:
    evals = [r for r in records if r.get("kind") == "eval"]
    return {"run": name, "settings": combo, "run_dir": summary["run_dir"], "steps": summary["steps"],
            "final_validation": evals[-1].get(metric) if evals else None,
            "best_validation": summary["best_validation"].get(metric),
            "final": summary["final"], "seconds": round(seconds, 1)}


def run_config(cfg: RunConfig, combo: dict, output: Path, name: str) -> RunConfig:
    """`cfg` with one combination of values, in its own folder; a combination that cannot work, for its settings or
    its model, fails here, before any run starts."""
    values = cfg.to_dict()
    for key, value in combo.items():
        section, field = key.split(".")
        values[section][field] = value
    values["train"].update(output=str(output), name=name)
    try:
        run_cfg = RunConfig.from_dict(values)
        Trainer(run_cfg, output).check_model()  # the model's files, and the lengths it can take
    except TextclsError as e:
        raise TextclsError(f"sweep run {name}: {e}; no run was started") from None
    return run_cfg


def sweep(cfg: RunConfig, grid: dict[str, list]) -> dict:
    """Train once per combination of `grid` values on top of `cfg`; runs go to <output>/<key=value,...>/. A run
    that fails with a user error (e.g. a loss that diverges at a high learning rate) is reported, and the sweep goes
    on; when every run fails, that is the error. Under `accelerate launch` every process takes part in every run
    and the main process writes the sweep's files."""
    from accelerate import PartialState

    from textcls.device import no_gpu
    from textcls.train.plots import plot_sweep
    from textcls.train.rundir import METRICS, MetricsLog

    state = PartialState(cpu=no_gpu())
    out = Path(cfg.train.output or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-sweep")
    _check_output(out)
    state.wait_for_everyone()  # every process has looked before the first run creates anything

    def write(name: str, text: str) -> None:
        if state.is_main_process:
            atomic_write_text(out / name, text)

    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    names = run_names(combos)
    # Every combination's config is made (and so checked) before the first run starts.
    configs = [run_config(cfg, combo, out / name, name) for name, combo in zip(names, combos)]
    metric = cfg.train.metric_for_best
    result: dict[str, Any] = {"sweep_dir": str(out), "grid": grid, "metric": metric, "status": "running",
                              "runs": []}
    curves = {}
    for i, (name, combo, run_cfg) in enumerate(zip(names, combos, configs), 1):
        log.info("sweep run %d/%d: %s", i, len(combos), name)
        start = time.perf_counter()
        try:
            summary = train(run_cfg)
        except TextclsError as e:
            log.warning("sweep run %s failed: %s", name, e)
            result["runs"].append({"run": name, "settings": combo, "error": str(e)})
        else:
            curves[name] = MetricsLog(out / name / METRICS).read()
            # The metric the runs pick their best by: --metric-for-best as the data's problem type reads it
            # ("accuracy", the default, is micro_f1 for multi-label data and pearson for a regression).
            metric = result["metric"] = next(k for k in summary["best_validation"] if k != "step")
            result["runs"].append(_run_result(name, combo, summary, curves[name], metric,
                                              time.perf_counter() - start))
        write(SWEEP_JSON, json.dumps(result, indent=2) + "\n")
    if not curves:
        raise TextclsError(f"every run of the sweep failed (see {out / SWEEP_JSON}); the first: "
                           f"{result['runs'][0]['error']}")
    result["plot"] = str(out / SWEEP_PNG)
    if state.is_main_process:
        plot_sweep(curves, metric, out / SWEEP_PNG)
    result["table"] = comparison_table(result)
    result["status"] = "done" if len(curves) == len(combos) else "done, with failed runs"
    result["failed"] = len(combos) - len(curves)
    write(SWEEP_MD, f"# Sweep over {', '.join(map(_short, grid))}\n\n{result['table']}\n\n"
                    f"![training loss and validation {metric} of each run]({SWEEP_PNG})\n")
    write(SWEEP_JSON, json.dumps(result, indent=2) + "\n")
    return result


def comparison_table(result: dict) -> str:
    """A markdown table: the swept values, the final and best validation metric, the final metric on each
    evaluated split, steps and wall time of every run; failed runs with their error below."""
    metric, runs = result["metric"], result["runs"]
    splits = sorted({s for r in runs for s in r.get("final", {})})
    header = [*map(_short, result["grid"]), f"final val {metric}", f"best val {metric}",
              *(f"{s} {metric}" for s in splits), "steps", "time"]
    fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    rows, failures = [], []
    for r in runs:
        settings = [str(v) for v in r["settings"].values()]
        if "error" in r:
            rows.append(settings + ["failed"] + [""] * (len(header) - len(settings) - 1))
            failures.append(f"- {r['run']}: {r['error']}")
            continue
        rows.append(settings + [fmt(r["final_validation"]), fmt(r["best_validation"]),
                                *(fmt(r["final"].get(s, {}).get(metric)) for s in splits),
                                str(r["steps"]), f"{r['seconds']:.1f} s"])
    lines = ["| " + " | ".join(row) + " |" for row in [header, ["---"] * len(header), *rows]]
    return "\n".join(lines + ([""] + failures if failures else []))
