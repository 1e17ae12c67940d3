"""Reading a data source into raw Arrow tables, one per split, before any column is chosen or checked.

Local files are read with pyarrow straight into memory: one pass, its own clear parse errors, and no second copy in
the datasets cache (IMDB train+test loads in a tenth of a second). The aclImdb layout is read file by file, from the
folder or streamed from the .tar.gz in place; per-class text files line by line; hub names go through
`datasets.load_dataset`. `textcls.data.sources` turns the tables into the standard DatasetDict.
"""

from __future__ import annotations

import logging
import os
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import pyarrow as pa

from textcls.errors import TextclsError
from textcls.io import reading

log = logging.getLogger("textcls")

# File and folder names of splits, as the field writes them (GLUE's dev.tsv, aclImdb's train/unsup).
SPLIT_NAMES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
               "dev": "validation", "test": "test", "unsupervised": "unsupervised", "unsup": "unsupervised",
               "unlabeled": "unsupervised", "unlabelled": "unsupervised"}
# A label folder of these names holds unlabelled rows (aclImdb/train/unsup): they form the "unsupervised" split.
UNLABELLED_FOLDERS = ("unsup", "unsupervised", "unlabeled", "unlabelled")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
IMDB_FILE_NAME = re.compile(r"(\d+)_(\d+)\.txt")  # [id]_[rating].txt
FORMATS_HELP = ("textcls reads .parquet, .csv, .tsv and .jsonl files, an aclImdb folder or .tar.gz, a folder of "
                "SPLIT.EXT files, of SPLIT/LABEL/*.txt files or of one text file per class, or a hub dataset name")


@dataclass
class RawSplit:
    table: pa.Table
    origin: str                        # the file or folder the rows came from, quoted in messages
    fingerprint: Optional[str] = None  # identifies the rows cheaply (file stats); None: datasets hashes the content
    class_names: dict[str, list[str]] = field(default_factory=dict)  # names of the source's ClassLabel columns


def read_source(spec: str, encoding: str = "utf-8", columns: Optional[list[str]] = None) -> dict[str, RawSplit]:
    """Read `spec` (a file, a folder or a hub name) into raw tables keyed by standard split name; `columns` names
    the columns of CSV/TSV files that have no header row."""
    path = Path(spec).expanduser()
    if path.exists():
        with reading(path):  # a file or folder that cannot be read says so, and why
            return _read_path(path, spec, encoding, columns)
    if (spec.startswith((".", "/", "~")) or spec.count("/") > 1 or Path(spec).suffix in _TABULAR
            or spec.endswith(ARCHIVE_SUFFIXES)):
        raise TextclsError(f"data path {spec!r} does not exist; check the path ({FORMATS_HELP})")
    return _read_hub(spec)


def _read_path(path: Path, spec: str, encoding: str, columns: Optional[list[str]]) -> dict[str, RawSplit]:
    if path.is_dir():
        return _read_folder(path, encoding, columns)
    if not path.is_file():
        raise TextclsError(f"data path {spec!r} is neither a file nor a folder; {FORMATS_HELP}")
    if path.name.endswith(ARCHIVE_SUFFIXES):
        return _read_tar(path, encoding)
    if path.suffix not in _TABULAR:
        raise TextclsError(f"cannot tell the format of {spec!r} from its name; {FORMATS_HELP}")
    return {"train": RawSplit(read_table(path, encoding, columns), str(path), _file_fingerprint([path]))}


# ------------------------------------------------------------------------------------------- text and tables

def decode(data: bytes, where: str, encoding: str) -> str:
    """`data` as text, or a TextclsError that names the first line that is not in `encoding`."""
    try:
        return data.decode(encoding).removeprefix("\ufeff")  # a byte-order mark is not part of the first field
    except LookupError:
        raise TextclsError(f"unknown text encoding {encoding!r} (--encoding); try utf-8 or latin-1") from None
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise TextclsError(f"{where}: line {line} is not valid {encoding} (byte {data[e.start:e.start + 1]!r}); "
                           f"if the file uses another encoding, give it with --encoding, e.g. --encoding latin-1"
                           ) from None


def _utf8_buffer(path: Path, encoding: str) -> pa.BufferReader:
    """The file as UTF-8 bytes, which is what pyarrow's CSV and JSON readers parse, in memory that Arrow owns. Not a
    Python file object, nor a buffer over a Python bytes object: Arrow's reader threads would need the interpreter
    to read the one or to release the other, and the threaded reader may drop its last reference on a worker thread
    after read_csv has returned; when the interpreter is exiting by then (after an error found in the table, say),
    that thread dies inside C++ and the process aborts ("terminate called without an active exception"; seen under
    load, about one run in twelve)."""
    data = decode(path.read_bytes(), str(path), encoding).encode("utf-8")
    buffer = pa.allocate_buffer(len(data))
    pa.FixedSizeBufferWriter(buffer).write(data)
    return pa.BufferReader(buffer)


_BLOCK = 1 << 24  # pyarrow parses in blocks; one row (a long review) must fit in a block


def _read_parquet(path: Path, encoding: str, headerless: bool) -> pa.Table:
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    return table.drop_columns([c for c in table.column_names if c.startswith("__index_level_")])  # pandas' index


def _read_delimited(path: Path, encoding: str, headerless: bool, parse_options) -> pa.Table:
    """A CSV or TSV file; `headerless`: the first row is data, and the columns are named f0, f1, ..."""
    import pyarrow.csv as pacsv
    read_options = pacsv.ReadOptions(block_size=_BLOCK, autogenerate_column_names=headerless)
    return pacsv.read_csv(_utf8_buffer(path, encoding), read_options=read_options, parse_options=parse_options)


def _read_csv(path: Path, encoding: str, headerless: bool) -> pa.Table:
    import pyarrow.csv as pacsv
    return _read_delimited(path, encoding, headerless, pacsv.ParseOptions(newlines_in_values=True))


def _read_tsv(path: Path, encoding: str, headerless: bool) -> pa.Table:
    import pyarrow.csv as pacsv
    # As GLUE writes TSV: no quoting, so a sentence may start with a quote mark.
    return _read_delimited(path, encoding, headerless, pacsv.ParseOptions(delimiter="\t", quote_char=False))


def _read_jsonl(path: Path, encoding: str, headerless: bool) -> pa.Table:
    import pyarrow.json as pajson
    return pajson.read_json(_utf8_buffer(path, encoding), read_options=pajson.ReadOptions(block_size=_BLOCK))


_TABULAR: dict[str, tuple[str, Callable[[Path, str, bool], pa.Table]]] = {
    ".parquet": ("parquet", _read_parquet), ".csv": ("CSV", _read_csv), ".tsv": ("TSV", _read_tsv),
    ".jsonl": ("JSON Lines", _read_jsonl), ".json": ("JSON Lines", _read_jsonl)}


def read_table(path: Path, encoding: str, columns: Optional[list[str]] = None) -> pa.Table:
    """A tabular file, read by its suffix; a damaged one is a TextclsError. `columns` names the columns of a CSV or
    TSV file without a header row (the classic AG News, DBpedia and Yelp files)."""
    kind, read = _TABULAR[path.suffix]
    if columns is not None and kind not in ("CSV", "TSV"):
        raise TextclsError(f"--columns names the columns of CSV/TSV files without a header row, but {str(path)!r} "
                           f"is {kind}, whose columns have names; leave --columns out")
    with reading(path):
        try:
            table = read(path, encoding, columns is not None)
        except (pa.ArrowException, OSError) as e:
            if isinstance(e, OSError) and e.errno:  # the file cannot be opened (permission...): `reading` says so
                raise
            mixed = re.search(r"Column\((.*?)\) changed from (\w+) to (\w+)(?: in row (\d+))?", str(e))
            if mixed:  # JSON Lines whose column holds numbers in some rows and strings in others
                column, old, new, row = mixed.groups()
                where = f" (line {int(row) + 1})" if row else ""
                column, lists = column.lstrip("/"), ""
                if column.endswith("/[]"):  # the items of a list column (multi-label labels)
                    column, lists = column[:-3], " in its lists"
                raise TextclsError(f"column {column!r} of {str(path)!r} mixes types{lists}: {old} values, then "
                                   f"{new} ones{where}; write every value of a column the same way (e.g. every label "
                                   f"as a string, or every label as a number)") from None
            raise TextclsError(f"cannot read {str(path)!r} as {kind}: {e}; the file is damaged, truncated or not "
                               f"{kind}: check it or copy it again") from None
    if columns is None:
        return table
    if table.num_columns != len(columns):
        raise TextclsError(f"{str(path)!r} has {table.num_columns} columns but --columns names {len(columns)}: "
                           f"{','.join(columns)}; name every column of the file, in order")
    return table.rename_columns(columns)


def _file_fingerprint(paths: list[Path]) -> str:
    """Identify files by path, size and modification time, as datasets does for its cache files: hashing the
    content of IMDB would take longer than reading it."""
    from datasets.fingerprint import Hasher
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    return Hasher.hash(stats)


# ------------------------------------------------------------------------------------------- folders

def _read_folder(path: Path, encoding: str, columns: Optional[list[str]]) -> dict[str, RawSplit]:
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    tabular = [p for p in entries if p.is_file() and p.suffix in _TABULAR]
    if tabular:
        return _read_split_files(tabular, encoding, columns)
    subdirs = [d for d in entries if d.is_dir()]
    for root in [path] + (subdirs if len(subdirs) == 1 else []):  # aclImdb/, or the folder that holds just it
        if _is_tree(root):
            return _tree_splits(_folder_tree_files(root), str(root), encoding)
    class_files = [p for p in entries if p.is_file() and not p.name.upper().startswith(("README", "LICENSE"))]
    if len(class_files) >= 2:
        return _read_class_files(path, class_files, encoding)
    raise TextclsError(f"cannot tell the format of folder {str(path)!r} (it holds: "
                       f"{', '.join(p.name for p in entries[:10]) or 'nothing'}); {FORMATS_HELP}")


def _split_of(name: str, where: str) -> str:
    split = SPLIT_NAMES.get(name)
    if split is None:
        raise TextclsError(f"{where}: {name!r} is not a split name; name the files or folders train, "
                           f"validation (or dev, valid, val), test and unsupervised (or unsup)")
    return split


def _read_split_files(files: list[Path], encoding: str, columns: Optional[list[str]]) -> dict[str, RawSplit]:
    """SPLIT.EXT files, or shards SPLIT-00000-of-00002.EXT as the hub stores them, concatenated in name order."""
    by_split: dict[str, list[Path]] = {}
    for p in files:
        by_split.setdefault(_split_of(p.stem.split("-")[0], str(p)), []).append(p)
    out = {}
    for split, paths in by_split.items():
        tables = [read_table(p, encoding, columns) for p in paths]
        try:
            table = pa.concat_tables(tables)
        except pa.ArrowInvalid as e:
            raise TextclsError(f"the files of split {split!r} ({', '.join(p.name for p in paths)}) do not have the "
                               f"same columns: {e}") from None
        out[split] = RawSplit(table, ", ".join(map(str, paths)), _file_fingerprint(paths))
    return out


def _read_class_files(folder: Path, files: list[Path], encoding: str) -> dict[str, RawSplit]:
    """One class per file, one example per line: LABEL.txt files, or NAME.LABEL files sharing one NAME
    (rt-polarity.pos, rt-polarity.neg)."""
    if all(p.suffix == ".txt" for p in files):
        labels = [p.stem for p in files]
    elif len({p.stem for p in files}) == 1:
        labels = [p.suffix.lstrip(".") for p in files]
    else:
        raise TextclsError(f"cannot tell the format of folder {str(folder)!r}: as per-class text files, name them "
                           f"LABEL.txt (pos.txt, neg.txt) or NAME.LABEL (reviews.pos, reviews.neg); {FORMATS_HELP}")
    texts, names = [], []
    for p, label in zip(files, labels):
        lines = decode(p.read_bytes(), str(p), encoding).split("\n")
        if lines[-1] == "":  # the newline that ends the last line
            lines.pop()
        texts += [line.removesuffix("\r") for line in lines]
        names += [label] * len(lines)
        log.info("read %d %r examples from %s", len(lines), label, p.name)
    table = pa.table({"text": pa.array(texts, pa.string()), "label": pa.array(names, pa.string())})
    return {"train": RawSplit(table, str(folder), _file_fingerprint(files))}


# ------------------------------------------------------------------------------------------- SPLIT/LABEL/*.txt trees

def _is_tree(root: Path) -> bool:
    return any(d.name in SPLIT_NAMES and any(d.glob("*/*.txt")) for d in root.iterdir() if d.is_dir())


# In a tree, only folders named as splits count: aclImdb/ also holds imdb.vocab, train/urls_pos.txt and such.

def _folder_tree_files(root: Path) -> Iterator[tuple[str, str, str, bytes]]:
    for split_dir in sorted(d for d in root.iterdir() if d.is_dir() and d.name in SPLIT_NAMES):
        for label_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            with os.scandir(label_dir) as it:
                for f in it:
                    if f.name.endswith(".txt") and f.is_file():
                        yield split_dir.name, label_dir.name, f.name, Path(f.path).read_bytes()


def _tar_tree_files(path: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """Stream the members [TOP/]SPLIT/LABEL/NAME.txt of an archive without extracting it."""
    with tarfile.open(path, "r|*") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) in (3, 4) and parts[-3] in SPLIT_NAMES and parts[-1].endswith(".txt"):
                yield parts[-3], parts[-2], parts[-1], tar.extractfile(member).read()


def _read_tar(path: Path, encoding: str) -> dict[str, RawSplit]:
    try:
        return _tree_splits(_tar_tree_files(path), str(path), encoding)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise TextclsError(f"cannot read archive {str(path)!r}: {e}; it is damaged or truncated: download it again"
                           ) from None


def _tree_splits(files: Iterator[tuple[str, str, str, bytes]], origin: str, encoding: str) -> dict[str, RawSplit]:
    """Rows from (split folder, label folder, file name, bytes): the label is the folder; rating and review_id come
    from aclImdb's [id]_[rating].txt names. Rows are ordered by label, then id (the order of the parquet copy)."""
    rows: dict[str, list[tuple]] = {}
    for split_name, label, name, data in files:
        where = f"{origin}: {split_name}/{label}/{name}"
        split = "unsupervised" if label in UNLABELLED_FOLDERS else SPLIT_NAMES[split_name]
        match = IMDB_FILE_NAME.fullmatch(name)
        rows.setdefault(split, []).append((
            None if split == "unsupervised" else label, int(match[1]) if match else -1, name,
            int(match[2]) if match else None, decode(data, where, encoding)))
    if not rows:
        raise TextclsError(f"{origin} holds no SPLIT/LABEL/*.txt files; {FORMATS_HELP}")
    named = all(r[3] is not None for split_rows in rows.values() for r in split_rows)
    out = {}
    for split, split_rows in rows.items():
        split_rows.sort(key=lambda r: (r[0] or "", r[1], r[2]))
        label, review_id, _, rating, text = zip(*split_rows)
        columns = {"text": pa.array(text, pa.string()), "label": pa.array(label, pa.string())}
        if named:
            columns |= {"rating": pa.array(rating, pa.int8()), "review_id": pa.array(review_id, pa.int32())}
        out[split] = RawSplit(pa.table(columns), f"{origin} ({split})")
    return out


# ------------------------------------------------------------------------------------------- the hub

def _read_hub(spec: str) -> dict[str, RawSplit]:
    """`name`, `owner/name` or `name:config` (glue:sst2) through datasets.load_dataset."""
    import datasets

    name, _, config = spec.partition(":")
    local = ("pass a local copy instead with --data PATH: a folder of train/test .parquet, .csv, .tsv or .jsonl "
             "files (for IMDB: --data ../shared/data/imdb), an aclImdb folder or aclImdb_v1.tar.gz, or one file")
    if not datasets.config.HF_HUB_OFFLINE:
        _check_hub_reachable(name, spec, local)
    try:
        dsd = datasets.load_dataset(name, config or None)
    except ConnectionError:  # offline and not in the datasets cache: raised at once, without retries
        raise TextclsError(f"cannot load {spec!r} from the Hugging Face hub: offline mode is on (HF_HUB_OFFLINE or "
                           f"HF_DATASETS_OFFLINE) and it is not in the local datasets cache, nor is there a local "
                           f"file or folder of that name; {local}") from None
    except (FileNotFoundError, ValueError) as e:  # no such dataset or config; the message lists the configs
        raise TextclsError(f"cannot load {spec!r} from the Hugging Face hub: {e}") from None
    out = {}
    for hub_split, ds in dsd.items():
        split = SPLIT_NAMES.get(hub_split)
        if split is None:
            log.warning("ignoring split %r of %s (not train, validation, test or unsupervised)", hub_split, spec)
            continue
        class_names = {c: f.names for c, f in ds.features.items() if isinstance(f, datasets.ClassLabel)}
        class_names |= {c: f.feature.names for c, f in ds.features.items()  # multi-label: a list of ClassLabel
                        if isinstance(getattr(f, "feature", None), datasets.ClassLabel)}
        out[split] = RawSplit(ds.data.table, f"{spec} ({hub_split})", ds._fingerprint, class_names)
    return out


def _check_hub_reachable(name: str, spec: str, local: str) -> None:
    """One quick request before load_dataset, whose retries would take half a minute to say the hub is down."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi().dataset_info(name, timeout=10)
    except RepositoryNotFoundError:
        raise TextclsError(f"{spec!r} is neither a local file or folder nor a dataset on the Hugging Face hub; "
                           f"{FORMATS_HELP}") from None
    except HfHubHTTPError:
        return  # the hub answered; load_dataset reports gated or private datasets itself
    except Exception as e:  # DNS, refused, timed out: the exception types are the HTTP client's own
        raise TextclsError(f"cannot load {spec!r}: the Hugging Face hub cannot be reached ({e}); if it is in your "
                           f"datasets cache, set HF_HUB_OFFLINE=1 to use that copy, or {local}") from None
