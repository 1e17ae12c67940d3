"""The recipes in recipes/ are config files that load as they are, and the README's main job is one of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from textcls.config import RunConfig

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert {p.stem for p in RECIPES} >= {"imdb-bert-tiny", "imdb-minilm-cpu", "imdb-mlm-pretrain"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads(path):
    cfg = RunConfig.load(path)
    assert cfg.data.data == "../shared/data/imdb" and cfg.data.label_names == ["neg", "pos"]
    assert cfg.train.output is None  # every run of a recipe gets its own folder


def test_the_main_job_is_the_readme_first_command():
    from test_slow import readme_main_job

    assert readme_main_job() == ["textcls", "train", "--config", "recipes/imdb-bert-tiny.yaml"]
    cfg = RunConfig.load(RECIPES[0].parent / "imdb-bert-tiny.yaml")
    assert (cfg.model.model, cfg.model.init, cfg.tokenize.truncation, cfg.model.pooling) == \
        ("bert-tiny", "random", "head+tail", "mean")
    assert (cfg.train.learning_rate, cfg.train.epochs, cfg.train.weight_decay, cfg.model.hidden_dropout) == \
        (1e-3, 2, 0.1, 0.2)
