"""Classic dataset file shapes: headerless CSV/TSV named by --columns (AG News, DBpedia, Yelp), a text joined from
several columns (--text-column title,text), and --split dev / valid for the validation split."""

from __future__ import annotations

import pytest

from textcls.config import DataConfig
from textcls.data.sources import label_names, load_data
from textcls.errors import TextclsError

# As the Zhang et al. (2015) files are written: every field quoted, no header row, the class id first.
AG_NEWS = ('"3","Wall St. Bears Claw Back","Short-sellers are seeing green again."\n'
           '"4","Mars rover finds water","NASA said on Monday, in a statement, that ice was seen."\n'
           '"3","Oil prices soar","Crude hits a record."\n'
           '"4","New chip, faster","Intel unveils a processor."\n')


@pytest.fixture
def ag_news(tmp_path):
    folder = tmp_path / "ag_news"
    folder.mkdir()
    (folder / "train.csv").write_text(AG_NEWS)
    (folder / "test.csv").write_text(AG_NEWS)
    return folder


def test_headerless_csv_named_by_columns_joins_title_and_text(ag_news):
    dsd = load_data(DataConfig(data=str(ag_news), columns=["label,title,text"], text_column="title,text",
                               validation_fraction=0))
    test = dsd["test"]
    assert len(test) == 4  # the first row is data, not a header
    assert test["text"][:2] == ["Wall St. Bears Claw Back Short-sellers are seeing green again.",
                                "Mars rover finds water NASA said on Monday, in a statement, that ice was seen."]
    assert label_names(dsd) == ["3", "4"]  # class ids 3 and 4 (of 1..4) map to ids 0 and 1 in sorted order
    assert test["label"] == [0, 1, 0, 1]
    assert "title" not in test.column_names  # a joined column is a part of the text, not an extra column


def test_columns_as_a_list_tsv_and_separator(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("pos\tGreat\tloved it\nneg\tBad\thated it\n" * 3)
    dsd = load_data(DataConfig(data=str(path), columns=["label", "title", "body"], text_column="title,body",
                               text_separator=" | ", validation_fraction=0, test_fraction=0.5))
    texts = set(dsd["train"]["text"]) | set(dsd["test"]["text"])
    assert texts == {"Great | loved it", "Bad | hated it"}


def test_single_text_column_is_unchanged(ag_news):
    dsd = load_data(DataConfig(data=str(ag_news), columns=["label", "title", "text"], text_column="text",
                               validation_fraction=0))
    assert dsd["test"]["text"][0] == "Short-sellers are seeing green again."
    assert dsd["test"]["title"][0] == "Wall St. Bears Claw Back"  # an unchosen column stays as it is


def test_wrong_number_of_columns(ag_news):
    with pytest.raises(TextclsError) as e:
        load_data(DataConfig(data=str(ag_news), columns=["label,text"]))
    message = str(e.value)
    assert "\n" not in message
    assert "test.csv" in message and "has 3 columns but --columns names 2: label,text" in message


def test_missing_text_column_lists_the_file_s_columns(ag_news):
    with pytest.raises(TextclsError, match=r"column 'body' \(--text-column\) is not in .*train.csv; its columns "
                                           r"are: label, title, text$"):
        load_data(DataConfig(data=str(ag_news), columns=["label,title,text"], text_column="title,body"))


def test_columns_on_a_file_with_named_columns(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 0}\n')
    with pytest.raises(TextclsError, match=r"is JSON Lines, whose columns have names; leave --columns out$"):
        load_data(DataConfig(data=str(path), columns=["label,text"]))


def test_columns_must_name_each_column_once():
    with pytest.raises(TextclsError, match="--columns must name every column of the file once, got: a,b,a"):
        DataConfig(columns=["a,b", "a"])


@pytest.mark.parametrize("alias", ["dev", "valid"])
def test_split_dev_is_validation(cli, small_imdb, alias):
    """`--split dev` resolves to validation (checked on `textcls tokens`, which reads a row as training does)."""
    row = cli.json("tokens", "--data", str(small_imdb), "--split", alias, "--index", "0", "--tokenizer", "minilm-l6")
    assert row["split"] == "validation"


def test_evaluate_split_dev(cli, trained_run, small_imdb, tmp_path):
    result = cli.json("evaluate", str(trained_run), "--data", str(small_imdb), "--split", "dev", "--cache-dir",
                      str(tmp_path))
    assert result["split"] == "validation"


def test_a_pair_joined_from_several_columns(tmp_path):
    """--text-pair-column title,body: the second text of a pair joined from two columns, as --text-column joins."""
    path = tmp_path / "train.tsv"
    path.write_text("pos\tIs it good?\tGreat\tloved it\nneg\tIs it good?\tBad\thated it\n" * 3)
    dsd = load_data(DataConfig(data=str(path), columns=["label", "question", "title", "body"],
                               text_column="question", text_pair_column="title,body", text_separator=" | ",
                               validation_fraction=0, test_fraction=0.5))
    rows = {(t, p) for split in dsd.values() for t, p in zip(split["text"], split["text_pair"])}
    assert rows == {("Is it good?", "Great | loved it"), ("Is it good?", "Bad | hated it")}
    assert "title" not in dsd["train"].column_names and "body" not in dsd["train"].column_names
    with pytest.raises(TextclsError, match="column 'summary' \\(--text-pair-column\\) is not in"):
        load_data(DataConfig(data=str(path), columns=["label", "question", "title", "body"],
                             text_column="question", text_pair_column="title,summary"))


def test_predict_joins_columns_as_training_did(trained_run, tmp_path, cli):
    """predict --text-column title,text --text-separator SEP gives the labels of the joined texts."""
    inputs = tmp_path / "in.csv"
    inputs.write_text("title,text\nGreat,A wonderful film.\nAwful,A waste of time.\n", encoding="utf-8")
    joined = cli.json("predict", str(trained_run), "--input", str(inputs), "--text-column", "title,text",
                      "--text-separator", " - ")
    direct = cli.json("predict", str(trained_run), "Great - A wonderful film.", "Awful - A waste of time.")
    assert [r["text"] for r in joined] == ["Great - A wonderful film.", "Awful - A waste of time."]
    assert [r["probabilities"] for r in joined] == [r["probabilities"] for r in direct]
    rc, err = cli.run(["predict", str(trained_run), "--input", str(inputs), "--text-column", "title,body"])
    assert rc == 2 and "column 'body' (--text-column) is not in" in err
