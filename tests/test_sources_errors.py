"""Bad input: one clear message that names the file / column / value and what to do; exit 2 from the CLI."""

from __future__ import annotations

import io
import json
import tarfile

import pandas as pd
import pytest

from textcls.cli import main
from textcls.config import DataConfig
from textcls.data.sources import load_data
from textcls.errors import TextclsError


def labelled(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[["text", "label"]].assign(label=rows.label.map({0: "neg", 1: "pos"}))


def csv(path, df: pd.DataFrame):
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


# Each case writes its files under `d` from the real rows `r` and returns the --data argument and extra flags.
def missing_path(d, r):
    return [str(d / "nowhere" / "train.csv")]


def unknown_format(d, r):
    (d / "reviews.xlsx").write_bytes(b"PK\x03\x04")
    return [str(d / "reviews.xlsx")]


def missing_column(d, r):
    return [str(csv(d / "train.csv", r)), "--text-column", "body"]


def unseen_test_label(d, r):
    csv(d / "train.csv", labelled(r))
    csv(d / "test.csv", labelled(r.head(4)).assign(label=["neg", "pos", "neutral", "pos"]))
    return [str(d)]


def not_utf8(d, r):
    (d / "train.csv").write_bytes(b"text,label\ngood film,pos\nmauvais caf\xe9,neg\n")
    return [str(d / "train.csv")]


def truncated_parquet(d, r):
    r.to_parquet(d / "full.parquet")
    data = (d / "full.parquet").read_bytes()
    (d / "train.parquet").write_bytes(data[: len(data) // 2])
    (d / "full.parquet").unlink()
    return [str(d / "train.parquet")]


def empty_texts(d, r):
    return [str(csv(d / "train.csv", r.assign(text=[""] * 3 + list(r.text[3:]))))]


CLI_CASES = {
    missing_path: r"data path '.*nowhere/train.csv' does not exist",
    unknown_format: r"cannot tell the format of '.*reviews.xlsx' from its name; textcls reads .parquet",
    missing_column: r"column 'body' \(--text-column\) is not in .*train.csv; its columns are: text, label, rating, "
                    r"review_id",
    unseen_test_label: r"label 'neutral' in test \(.*test.csv\) does not occur in train, whose labels are: neg, pos",
    not_utf8: r"train.csv: line 3 is not valid utf-8 \(byte b'\\xe9'\); .* --encoding",
    truncated_parquet: r"cannot read '.*train.parquet' as parquet: .*; the file is damaged, truncated",
    empty_texts: r"3 of 40 rows of .*train.csv have an empty or missing text in column 'text' \(first: row index 0\)"
                 r"; fill them in or drop them with --drop-empty",
}


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.__name__)
def test_cli_reports_bad_input(tmp_path, imdb_rows, capsys, case):
    args = case(tmp_path, imdb_rows)
    before = sorted(tmp_path.rglob("*"))
    assert main(["data", "inspect", "--data", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("textcls: error: ") and "Traceback" not in err
    assert __import__("re").search(CLI_CASES[case], err), err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, nothing left behind


def test_cli_hub_name_offline(capsys):
    assert main(["data", "inspect", "--data", "glue:sst2", "--json"]) == 2
    err = capsys.readouterr().err
    assert "offline mode is on" in err and "--data PATH" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------- through load_data

def load(path, **settings):
    return load_data(DataConfig(data=str(path), **settings))


def test_unknown_folder_format(tmp_path):
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(TextclsError, match=r"cannot tell the format of folder .* \(it holds: notes.md\)"):
        load(tmp_path)


def test_no_usual_text_or_label_column(tmp_path, imdb_rows):
    path = csv(tmp_path / "train.csv", imdb_rows.rename(columns={"text": "body"}))
    with pytest.raises(TextclsError, match=r"none of the usual columns text, sentence.*its columns are: body, label, "
                                           r"rating, review_id; name the one to use with --text-column"):
        load(path)
    with pytest.raises(TextclsError, match=r"none of the usual columns label, labels.*--label-column"):
        load(csv(tmp_path / "other.csv", imdb_rows[["text"]]))


def test_validation_without_label_column(tmp_path, imdb_rows):
    csv(tmp_path / "train.csv", imdb_rows)
    csv(tmp_path / "dev.csv", imdb_rows[["text"]])
    with pytest.raises(TextclsError, match=r"column 'label' \(--label-column\) is not in .*dev.csv; its columns are: "
                                           r"text"):
        load(tmp_path)


def test_unseen_integer_label_in_validation(tmp_path, imdb_rows):
    csv(tmp_path / "train.csv", imdb_rows)
    csv(tmp_path / "validation.csv", imdb_rows.head(3).assign(label=[0, 1, 2]))
    with pytest.raises(TextclsError, match=r"label 2 in validation \(.*validation.csv\) does not occur in train"):
        load(tmp_path)


def test_fewer_than_two_labels(tmp_path, imdb_rows):
    with pytest.raises(TextclsError, match=r"train \(.*\) has 1 label \(0\) in column 'label'; classification needs "
                                           r"at least two"):
        load(csv(tmp_path / "train.csv", imdb_rows.assign(label=0)))


def test_unlabelled_train_rows(tmp_path, imdb_rows):
    df = labelled(imdb_rows)
    df.loc[[5, 9], "label"] = None
    with pytest.raises(TextclsError, match=r"2 of 40 rows of .*train.csv have no label in column 'label' \(first: "
                                           r"row index 5\); every train row needs one"):
        load(csv(tmp_path / "train.csv", df))


def test_fractional_labels(tmp_path, imdb_rows):
    # Fractions are a regression target (tests/test_problem_types.py), unless --problem single-label says otherwise.
    path = csv(tmp_path / "train.csv", imdb_rows.assign(label=imdb_rows.label * 0.5))
    assert load(path)["train"].features["label"].dtype == "float32"
    with pytest.raises(TextclsError, match=r"label column 'label' of .* holds fractions \(e.g. 0.5\).*--problem "
                                           r"regression"):
        load(path, problem="single-label")


def test_label_names_that_do_not_cover_the_labels(tmp_path, imdb_rows):
    with pytest.raises(TextclsError, match=r"label 'pos' in train .* has no name in --label-names neg positive"):
        load(csv(tmp_path / "train.csv", labelled(imdb_rows)), label_names=["neg", "positive"])
    with pytest.raises(TextclsError, match=r"label 1 in train .* has no name in --label-names neg"):
        load(csv(tmp_path / "ids.csv", imdb_rows), label_names=["neg"])


def test_bad_csv_rows(tmp_path):
    (tmp_path / "train.csv").write_text('text,label\n"a fine film",pos\nbad,row,extra\n')
    with pytest.raises(TextclsError, match=r"cannot read .*train.csv' as CSV: .*Expected 2 columns, got 3"):
        load(tmp_path / "train.csv")
    (tmp_path / "cut.csv").write_text('text,label\n"a fine film",pos\n"a review cut in the mid')
    with pytest.raises(TextclsError, match=r"cannot read .*cut.csv' as CSV: .*damaged, truncated"):
        load(tmp_path / "cut.csv")


def test_truncated_and_non_utf8_archive(tmp_path, imdb_rows):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i, row in enumerate(imdb_rows.itertuples()):
            data = row.text.encode() + (b"\nin latin-1: na\xefve" if i == 30 else b"")
            member = tarfile.TarInfo(f"aclImdb/train/{('neg', 'pos')[row.label]}/{row.review_id}_{row.rating}.txt")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    (tmp_path / "bad.tar.gz").write_bytes(buf.getvalue())
    row = imdb_rows.iloc[30]
    with pytest.raises(TextclsError, match=rf"bad.tar.gz: train/pos/{row.review_id}_{row.rating}.txt: line 2 is not "
                                           rf"valid utf-8 .* --encoding"):
        load(tmp_path / "bad.tar.gz")
    (tmp_path / "cut.tar.gz").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(TextclsError, match=r"cannot read archive .*cut.tar.gz.*damaged or truncated: download it"):
        load(tmp_path / "cut.tar.gz")


def test_empty_split(tmp_path, imdb_rows):
    csv(tmp_path / "train.csv", imdb_rows)
    (tmp_path / "test.csv").write_text("text,label\n")
    with pytest.raises(TextclsError, match=r"split 'test' of .*test.csv has no rows"):
        load(tmp_path)
    csv(tmp_path / "test.csv", imdb_rows.head(2).assign(text=""))
    with pytest.raises(TextclsError, match=r"split 'test' of .*test.csv has no rows left after --drop-empty"):
        load(tmp_path, drop_empty=True)


def test_pair_column_on_some_rows_only(tmp_path, imdb_rows):
    lines = [{"sentence1": t[:50], "sentence2": t[-50:], "label": y} for t, y in zip(imdb_rows.text, imdb_rows.label)]
    del lines[6]["sentence2"]
    lines[9]["sentence2"] = None
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with pytest.raises(TextclsError, match=r"pair column 'sentence2' is empty on 2 of 40 rows of .*train.jsonl "
                                           r"\(first: row index 6\).*--drop-empty"):
        load(tmp_path / "train.jsonl")
    assert len(load(tmp_path / "train.jsonl", drop_empty=True, validation_fraction=0, test_fraction=0)["train"]) == 38


def test_file_that_is_not_a_split(tmp_path, imdb_rows):
    csv(tmp_path / "train.csv", imdb_rows)
    csv(tmp_path / "extra.csv", imdb_rows)
    with pytest.raises(TextclsError, match=r"extra.csv: 'extra' is not a split name; name the files or folders train"):
        load(tmp_path)


@pytest.mark.parametrize("settings, message", [
    ({"validation_fraction": 1.5},
     r"--validation-fraction must be within \[0, 1\), got 1.5 \(data.validation_fraction in a config file\)"),
    ({"validation_fraction": 0.5, "test_fraction": 0.5}, r"leave nothing of train"),
    ({"max_train_samples": 0}, r"--max-train-samples must be at least 1, got 0"),
    ({"label_names": ["a", "a"]}, r"repeats a name"),
    ({"encoding": "klingon"}, r"unknown text encoding 'klingon'"),
    ({"max_train_samples": 1}, r"cannot take a stratified sample of 1 of the \d+ rows of train with 2 labels"),
    ({"data": None}, r"no data given: pass --data SPEC"),
])
def test_bad_settings(tmp_path, imdb_rows, settings, message):
    path = csv(tmp_path / "train.csv", imdb_rows)
    with pytest.raises(TextclsError, match=message):
        load_data(DataConfig(**({"data": str(path)} | settings)))
