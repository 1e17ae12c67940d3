"""Data sources → DatasetDict: every layout read back against the real IMDB rows it was written from."""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from textcls.config import DataConfig
from textcls.data.sources import label_names, load_data
from textcls.errors import TextclsError

COLUMNS = ["text", "label", "rating", "review_id"]


@pytest.fixture(scope="module")
def imdb_subset(imdb_dir, imdb_rows) -> dict[str, pd.DataFrame]:
    """Real rows of every split, in the parquet order (neg then pos, by review_id)."""
    test = pd.read_parquet(imdb_dir / "test.parquet")
    unsup = pq.read_table(imdb_dir / "unsupervised.parquet").slice(0, 6).to_pandas()
    return {"train": imdb_rows, "test": pd.concat([test[test.label == 0].head(5), test[test.label == 1].head(5)]),
            "unsupervised": unsup}


def write_acl_imdb(root, subset: dict[str, pd.DataFrame]):
    """The official layout: aclImdb/{train,test}/{neg,pos}/[id]_[rating].txt, aclImdb/train/unsup/[id]_0.txt,
    with the official distribution's other files beside them (which the reader must ignore)."""
    top = root / "aclImdb"
    for split, df in subset.items():
        for row in df.itertuples():
            folder = ("train", "unsup") if split == "unsupervised" else (split, ("neg", "pos")[row.label])
            path = top.joinpath(*folder, f"{row.review_id}_{row.rating}.txt")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(row.text, encoding="utf-8")
    (top / "imdb.vocab").write_text("the\nand\n")
    (top / "README").write_text("Large Movie Review Dataset v1.0\n")
    (top / "train" / "urls_pos.txt").write_text("http://www.imdb.com/title/tt0453418/usercomments\n")
    (top / "train" / "labeledBow.feat").write_text("9 0:9 1:1\n")
    return top


def column(ds, name: str) -> list:
    """A column as a list, read at once (indexing a Dataset by name gives a lazy column, read row by row)."""
    return ds.with_format("arrow")[name].to_pylist()


def rows(ds) -> pd.DataFrame:
    return ds.to_pandas()[COLUMNS].reset_index(drop=True)


def expected(df: pd.DataFrame) -> pd.DataFrame:
    return df[COLUMNS].reset_index(drop=True).astype({"label": "int64"})


# ------------------------------------------------------------------------------------------- aclImdb layout

@pytest.mark.parametrize("form", ["folder", "parent folder", "tar.gz"])
def test_acl_imdb_rows_match_the_parquet_rows(tmp_path, imdb_subset, form):
    top = write_acl_imdb(tmp_path / "src", imdb_subset)
    spec = {"folder": top, "parent folder": top.parent}.get(form)
    if form == "tar.gz":
        spec = tmp_path / "aclImdb_v1.tar.gz"
        with tarfile.open(spec, "w:gz") as tar:
            tar.add(top, arcname="aclImdb")
    before = sorted(p.name for p in tmp_path.iterdir())

    dsd = load_data(DataConfig(data=str(spec), validation_fraction=0))

    assert list(dsd) == ["train", "test", "unsupervised"]
    assert label_names(dsd) == ["neg", "pos"]  # the folder names, sorted: the parquet's 0 = neg, 1 = pos
    for split in dsd:
        pd.testing.assert_frame_equal(rows(dsd[split]), expected(imdb_subset[split]), check_dtype=False)
    assert dsd["train"].features["rating"].dtype == "int8" and dsd["train"].features["review_id"].dtype == "int32"
    assert set(dsd["unsupervised"]["label"]) == {-1}
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # the archive is read in place, nothing extracted


def test_any_split_label_tree_is_a_dataset(tmp_path, imdb_rows):
    """Folder names are the labels (three here) and split names; files need not be named [id]_[rating].txt."""
    for i, row in enumerate(imdb_rows.itertuples()):
        split = "dev" if i % 4 == 0 else "train"
        path = tmp_path / split / ("bad", "good", "mixed")[i % 3] / f"review-{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(row.text)
    dsd = load_data(DataConfig(data=str(tmp_path)))
    assert label_names(dsd) == ["bad", "good", "mixed"]
    assert dsd["validation"].column_names == ["text", "label"]  # no rating / review_id without [id]_[rating] names
    assert len(dsd["validation"]) == 10 and "test" in dsd  # dev → validation; test carved from train
    texts = {t for ds in dsd.values() for t in ds["text"]}
    assert texts == set(imdb_rows.text)


# ------------------------------------------------------------------------------------------- tabular files

def test_parquet_folder_with_carved_validation(imdb_dir):
    """The project's IMDB copy: validation is a stratified, seeded 10% of train, exactly what datasets'
    train_test_split(stratify_by_column=) gives, disjoint from what stays in train."""
    import datasets

    dsd = load_data(DataConfig(data=str(imdb_dir), label_names=["neg", "pos"]))
    assert {s: len(d) for s, d in dsd.items()} == {"train": 22500, "validation": 2500, "test": 25000,
                                                    "unsupervised": 50000}
    assert dsd["train"].features["label"] == datasets.ClassLabel(names=["neg", "pos"])
    assert dsd["validation"]["label"].count(0) == 1250

    full = datasets.Dataset(pq.read_table(imdb_dir / "train.parquet")).cast_column(
        "label", datasets.ClassLabel(names=["neg", "pos"]))
    reference = full.train_test_split(test_size=0.1, stratify_by_column="label", seed=42)
    assert column(dsd["validation"], "text") == column(reference["test"], "text")
    assert column(dsd["train"], "text") == column(reference["train"], "text")

    other_seed = load_data(DataConfig(data=str(imdb_dir), data_seed=7))
    assert column(other_seed["validation"], "text") != column(dsd["validation"], "text")
    again = load_data(DataConfig(data=str(imdb_dir), label_names=["neg", "pos"]))
    assert again["validation"]._fingerprint == dsd["validation"]._fingerprint  # the tokenized cache is found again


def test_imdb_is_read_in_one_pass_with_pyarrow(imdb_dir, monkeypatch):
    """What makes IMDB load in a tenth of a second: pyarrow reads each file once, whole (no datasets.load_dataset,
    no copy in its cache); every split holds the very text buffers read, carved splits by row indices; the
    fingerprints come from the files' stats, so datasets never hashes the content; validation is carved from the
    label column as one array, not row by row by datasets' train_test_split."""
    import datasets
    import datasets.arrow_dataset
    import pyarrow.parquet

    reads, read_table = {}, pyarrow.parquet.read_table

    def read_and_keep(path, *args, **kwargs):
        assert Path(path).name not in reads, f"{path} read twice"
        reads[Path(path).name] = table = read_table(path, *args, **kwargs)
        return table

    def refused(what):
        def call(*args, **kwargs):
            raise AssertionError(f"{what} was called")
        return call

    monkeypatch.setattr(pyarrow.parquet, "read_table", read_and_keep)
    monkeypatch.setattr(datasets, "load_dataset", refused("datasets.load_dataset"))
    monkeypatch.setattr(datasets.arrow_dataset, "generate_fingerprint", refused("datasets' hash of a split's content"))
    monkeypatch.setattr(datasets.Dataset, "train_test_split", refused("Dataset.train_test_split"))
    dsd = load_data(DataConfig(data=str(imdb_dir)))
    assert sorted(reads) == ["test.parquet", "train.parquet", "unsupervised.parquet"]
    assert {s: len(d) for s, d in dsd.items()} == {"train": 22500, "validation": 2500, "test": 25000,
                                                    "unsupervised": 50000}

    def text_buffers(table) -> set[int]:
        return {chunk.buffers()[2].address for chunk in table.column("text").chunks}

    for split, file in (("train", "train"), ("validation", "train"), ("test", "test"),
                        ("unsupervised", "unsupervised")):
        ds = dsd[split]
        assert ds.cache_files == [] and text_buffers(ds.data) <= text_buffers(reads[f"{file}.parquet"]), split
    assert dsd["train"]._indices is not None and dsd["validation"]._indices is not None  # carved: row indices


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_single_file_string_labels_and_named_columns(tmp_path, imdb_rows, ext):
    """One file is train; string labels get ids in sorted order; named columns become text/label; the rest stay."""
    df = imdb_rows.rename(columns={"text": "body"}).assign(
        sentiment=imdb_rows.label.map({0: "negative", 1: "positive"})).drop(columns="label")
    path = tmp_path / f"reviews.{ext}"
    {"csv": lambda: df.to_csv(path, index=False), "parquet": lambda: df.to_parquet(path),
     "jsonl": lambda: df.to_json(path, orient="records", lines=True)}[ext]()

    dsd = load_data(DataConfig(data=str(path), text_column="body", label_column="sentiment",
                               validation_fraction=0.25, test_fraction=0.25))
    assert label_names(dsd) == ["negative", "positive"]
    assert {s: len(d) for s, d in dsd.items()} == {"train": 20, "validation": 10, "test": 10}
    assert dsd["test"]["label"].count(0) == 5 and dsd["validation"]["label"].count(1) == 5
    got = pd.concat([d.to_pandas() for d in dsd.values()]).sort_values("text").reset_index(drop=True)
    want = imdb_rows.sort_values("text").reset_index(drop=True)
    assert list(got.columns) == ["text", "label", "rating", "review_id"]
    assert got.text.tolist() == want.text.tolist() and got.label.tolist() == want.label.tolist()


def test_glue_folder_pairs_and_unlabelled_test(tmp_path, imdb_rows):
    """GLUE's train.tsv / dev.tsv / test.tsv: sentence1+sentence2 detected as a pair, dev → validation, a test
    without labels stays unlabelled (-1)."""
    pairs = [("HuggingFace is based in NYC", "Where is HuggingFace based?", 1)] + [
        (row.text[:80].replace("\t", " "), row.text[-80:].replace("\t", " "), row.label)
        for row in imdb_rows.itertuples()]
    lines = [f"{a}\t{b}\t{y}" for a, b, y in pairs]
    (tmp_path / "train.tsv").write_text("sentence1\tsentence2\tlabel\n" + "\n".join(lines[:30]) + "\n")
    (tmp_path / "dev.tsv").write_text("sentence1\tsentence2\tlabel\n" + "\n".join(lines[30:]) + "\n")
    (tmp_path / "test.tsv").write_text("index\tsentence1\tsentence2\n0\t\"Quoted\" start\tsecond\n")

    dsd = load_data(DataConfig(data=str(tmp_path)))
    assert list(dsd) == ["train", "validation", "test"]
    assert dsd["train"].column_names == ["text", "text_pair", "label"]
    assert dsd["train"][0] == {"text": pairs[0][0], "text_pair": pairs[0][1], "label": 1}
    assert dsd["test"][0] == {"text": '"Quoted" start', "text_pair": "second", "label": -1, "index": 0}
    assert label_names(dsd) == ["0", "1"]


def test_integer_labels_keep_their_ids(tmp_path, imdb_rows):
    df = imdb_rows.assign(label=imdb_rows.label * 2)  # ids 0 and 2: id 1 exists but has no rows
    df.to_parquet(tmp_path / "train.parquet")
    df.iloc[::4].to_parquet(tmp_path / "test.parquet")
    dsd = load_data(DataConfig(data=str(tmp_path), label_names=["bad", "meh", "good"]))
    assert label_names(dsd) == ["bad", "meh", "good"]
    assert sorted(set(dsd["test"]["label"])) == [0, 2]
    # Without names, labels that are not 0..N-1 get ids in sorted order (as HF's run_classification): no empty class
    unnamed = load_data(DataConfig(data=str(tmp_path)))
    assert label_names(unnamed) == ["0", "2"]
    assert sorted(set(unnamed["test"]["label"])) == [0, 1]
    assert [unnamed["test"].features["label"].int2str(i) for i in unnamed["test"]["label"][:4]] == [
        str(v) for v in df.iloc[::4].label[:4]]


def test_label_names_order_string_labels(tmp_path, imdb_rows):
    imdb_rows.assign(label=imdb_rows.label.map({0: "neg", 1: "pos"})).to_csv(tmp_path / "train.csv", index=False)
    dsd = load_data(DataConfig(data=str(tmp_path / "train.csv"), label_names=["pos", "neg"]))
    assert label_names(dsd) == ["pos", "neg"]
    assert [dsd["train"].features["label"].int2str(i) for i in dsd["train"]["label"][:3]] == [
        {0: "neg", 1: "pos"}[y] for y in imdb_rows.set_index("text").loc[dsd["train"]["text"][:3], "label"]]


def test_hub_shards_and_split_file_names(tmp_path, imdb_rows):
    imdb_rows.iloc[::2].to_parquet(tmp_path / "train-00000-of-00002.parquet")
    imdb_rows.iloc[1::2].to_parquet(tmp_path / "train-00001-of-00002.parquet")
    imdb_rows.head(4).to_json(tmp_path / "valid.jsonl", orient="records", lines=True)
    (tmp_path / "README.md").write_text("ignored")
    dsd = load_data(DataConfig(data=str(tmp_path), test_fraction=0.5))
    assert {s: len(d) for s, d in dsd.items()} == {"train": 20, "validation": 4, "test": 20}


# ------------------------------------------------------------------------------------------- per-class text files

@pytest.mark.parametrize("names", [("neg.txt", "pos.txt"), ("rt-polarity.neg", "rt-polarity.pos")])
def test_class_files_with_stratified_test(tmp_path, imdb_rows, names):
    for label, name in enumerate(names):
        lines = [" ".join(t.split()) for t in imdb_rows[imdb_rows.label == label].text]
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    cfg = DataConfig(data=str(tmp_path), test_fraction=0.2, validation_fraction=0.25)
    dsd = load_data(cfg)
    assert label_names(dsd) == ["neg", "pos"]
    assert {s: (len(d), d["label"].count(1)) for s, d in dsd.items()} == {
        "train": (22, 11), "validation": (10, 5), "test": (8, 4)}  # 25% and 20% of the 40 rows
    assert {t for d in dsd.values() for t in d["text"]} == {" ".join(t.split()) for t in imdb_rows.text}
    assert load_data(cfg)["test"]["text"] == dsd["test"]["text"]  # seeded
    assert load_data(DataConfig(data=str(tmp_path), data_seed=1))["test"]["text"] != dsd["test"]["text"]


def test_encoding_flag_reads_latin1(tmp_path):
    (tmp_path / "neg.txt").write_bytes("mauvais café\nnul\n".encode("latin-1"))
    (tmp_path / "pos.txt").write_bytes("très bon\nsuperbe\n".encode("latin-1"))
    dsd = load_data(DataConfig(data=str(tmp_path), encoding="latin-1", test_fraction=0, validation_fraction=0))
    assert sorted(dsd["train"]["text"]) == ["mauvais café", "nul", "superbe", "très bon"]


# ------------------------------------------------------------------------------------------- subsets, empties, hub

def test_max_samples_are_stratified_and_seeded(imdb_dir, caplog):
    caplog.set_level(logging.INFO, logger="textcls")
    cfg = DataConfig(data=str(imdb_dir), max_train_samples=100, max_eval_samples=40)
    dsd = load_data(cfg)
    assert {s: len(d) for s, d in dsd.items()} == {"train": 100, "validation": 40, "test": 40, "unsupervised": 50000}
    assert [dsd[s]["label"].count(1) for s in ("train", "validation", "test")] == [50, 20, 20]
    assert column(load_data(cfg)["train"], "review_id") == column(dsd["train"], "review_id")
    assert "carved 2500 rows" in caplog.text and "stratified sample of 100" in caplog.text


def test_drop_empty(tmp_path, imdb_rows, caplog):
    caplog.set_level(logging.INFO, logger="textcls")
    df = imdb_rows.copy()
    df.loc[[3, 25], "text"] = ["", "  \n "]
    df.loc[7, "text"] = None
    df.to_parquet(tmp_path / "train.parquet")
    with pytest.raises(TextclsError, match=r"3 of 40 rows .* empty or missing text .* row index 3"):
        load_data(DataConfig(data=str(tmp_path)))
    dsd = load_data(DataConfig(data=str(tmp_path), drop_empty=True, validation_fraction=0, test_fraction=0))
    assert len(dsd["train"]) == 37 and "dropped 3 rows" in caplog.text


@pytest.mark.parametrize("spec", ["imdb", "glue:sst2", "stanfordnlp/imdb"])
def test_hub_name_offline_fails_at_once_with_the_local_way(spec, network_attempts):
    with pytest.raises(TextclsError, match=r"offline .* --data PATH") as e:
        load_data(DataConfig(data=spec))
    assert network_attempts == []  # no request to the hub, so no timeout and no retries
    assert "../shared/data/imdb" in str(e.value)
