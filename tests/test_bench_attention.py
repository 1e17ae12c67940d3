"""`textcls bench attention`: rows with the documented keys for every mechanism and reference, the files it writes,
and a case that runs out of time as a row that says so. Short lengths and one step: this checks the harness, the
numbers belong to BENCHMARKS.md."""

from __future__ import annotations

import json

import pytest

from textcls.bench.attention import REFERENCES, ROW_KEYS, Case, bench_attention
from textcls.model.attention import attention_names


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    from textcls.cli import main

    out = tmp_path_factory.mktemp("bench")
    argv = ["--quiet", "bench", "attention", "--lengths", "128", "--attention", "full", "sliding", "--batch-size", "1",
            "--repeats", "1", "--warmup", "0", "--sliding-window", "32", "--reference", "--output", str(out),
            "--json"]
    assert main(argv) == 0
    return out


def test_every_mechanism_and_reference_is_a_row(bench_run):
    rows = json.loads((bench_run / "bench.json").read_text())
    assert [r["attention"] for r in rows] == ["full", "sliding", *REFERENCES]
    for r in rows:
        assert set(ROW_KEYS) <= set(r) and r["status"] == "ok", r
        assert r["length"] == 128 and r["batch_size"] == 1 and r["step_seconds"] > 0
    # Each reference gets its textcls twin's options, or the defaults.
    options = {r["attention"]: r["options"] for r in rows}
    assert options["sliding"] == {"sliding_window": 32} and options["transformers-longformer"] == {"sliding_window": 32}
    assert options["full"] == {} and options["transformers-bigbird"] == {}


def test_table_and_plot_are_written(bench_run):
    table = (bench_run / "bench.md").read_text()
    assert table.splitlines()[0].startswith("| attention | length |") and "transformers-reformer" in table
    assert (bench_run / "attention.png").read_bytes()[:4] == b"\x89PNG"


def test_a_case_out_of_time_is_a_row_that_says_so():
    (row,) = bench_attention([64], ["full"], batch_size=1, repeats=1, warmup=0, timeout=0.01)
    assert row["step_seconds"] is None and row["status"].startswith("timeout")


def test_every_registered_mechanism_can_be_measured():
    """The bench builds each mechanism by name with its default options (a new one needs nothing more)."""
    from textcls.bench.attention import run_case

    for name in attention_names():
        row = run_case(Case(name, 64, 1, repeats=1, warmup=0))
        assert row["status"] == "ok" and row["step_seconds"] > 0, name


def test_unknown_mechanism_is_an_error(cli):
    assert "unknown attention 'nope'" in cli.error("bench", "attention", "--lengths", "64", "--attention", "nope")
