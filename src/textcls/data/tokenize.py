"""Tokenizing a DatasetDict once: a fast WordPiece tokenizer, a truncation strategy, cached Arrow files.

Each text is tokenized in full, without special tokens, so that its wordpiece count is known; the truncation
strategy then picks the wordpieces that stay, and the special tokens go where the tokenizer's own post-processor
puts them ([CLS] a [SEP] b [SEP] for BERT). The result of each split is cached under a name made from everything
that decides it (the rows, the vocabulary, the settings), and a manifest written last marks the cache complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

from textcls.config import BYTES_SPEC, ModelConfig, TokenizeConfig, wordpiece_size
from textcls.errors import TextclsError

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger("textcls")

# Bump when the cached columns or their meaning change: old caches are then simply not found.
CACHE_FORMAT = 2  # 2: the manifest holds a checksum of every file
MODEL_COLUMNS = ("input_ids", "token_type_ids", "length", "num_wordpieces")


# --------------------------------------------------------------------------------------------- tokenizer

def default_tokenizer_name(tokenize: TokenizeConfig, model: ModelConfig) -> str:
    """--tokenizer when given, else the model's own tokenizer (the model preset, folder or hub id)."""
    return tokenize.tokenizer or model.model


def has_tokenizer(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a tokenizer: a fast one's tokenizer.json, or a WordPiece vocab.txt to build one from."""
    return any((Path(folder) / f).is_file() for f in ("tokenizer.json", "vocab.txt"))


def load_tokenizer(name: str) -> "PreTrainedTokenizerFast":
    """A fast tokenizer from a preset (minilm-l6 is installed; bert-* come from the hub), a local folder or a hub id;
    `bytes` is built in (byte_tokenizer)."""
    from transformers import AutoTokenizer

    from textcls.hub import resolve

    if name == BYTES_SPEC:
        return byte_tokenizer()
    if wordpiece_size(name) is not None:
        raise TextclsError(f"--tokenizer {name} is a vocabulary that training learns from a run's data (textcls train "
                           f"--tokenizer {name}); to look at it, give the run's model folder: --tokenizer RUN/model")
    try:
        folder = resolve(name, "tokenizer", need_weights=False)
    except TextclsError as e:
        raise TextclsError(f"{e} To look at tokens offline, --tokenizer minilm-l6 has the same uncased WordPiece "
                           f"vocabulary as the bert-* presets; or give --tokenizer FOLDER.") from None
    needs = "the folder needs tokenizer.json, or vocab.txt with tokenizer_config.json"
    if not has_tokenizer(folder):
        raise TextclsError(f"{str(folder)!r} holds no tokenizer: {needs}; or give --tokenizer (a preset, a folder or "
                           f"a hub id)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0]  # transformers' messages run on over several lines
        raise TextclsError(f"cannot load a tokenizer from {str(folder)!r} ({reason}); {needs}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise TextclsError(f"tokenizer {name!r} is a slow (Python) tokenizer ({type(tokenizer).__name__}); textcls "
                           f"needs a fast one (a folder with tokenizer.json)")
    return tokenizer


# --tokenizer bytes: the UTF-8 bytes of a text, one token each.
BYTE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0 to 4; byte b is id len(BYTE_SPECIALS) + b
BYTE_VOCAB_SIZE = len(BYTE_SPECIALS) + 256


def byte_symbols() -> list[str]:
    """The symbol of each byte value 0..255 in tokenizers' ByteLevel alphabet (GPT-2's bytes_to_unicode: printable
    Latin-1 characters stand for themselves, every other byte for a character from U+0100 on, space is "Ġ")."""
    from tokenizers import pre_tokenizers

    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = iter(range(256, 512))
    symbols = [chr(b) if b in kept else chr(next(others)) for b in range(256)]
    assert sorted(symbols) == sorted(pre_tokenizers.ByteLevel.alphabet()), "tokenizers changed its byte alphabet"
    return symbols


def byte_tokenizer() -> "PreTrainedTokenizerFast":
    """`--tokenizer bytes`: every UTF-8 byte of a text is one token, as in the Long Range Arena's byte-level text
    task (Tay et al. 2021); cased, no normalisation, nothing learnt.

    Ids: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, then byte b = 5 + b (5 to 260): 261 tokens. [UNK] never
    occurs (every byte has its id); it is there for the libraries that expect one. "café" is c a f 0xC3 0xA9:
    ids 104 102 107 200 174. Special tokens go as BERT's: [CLS] a [SEP], and [CLS] a [SEP] b [SEP] with token
    type 1 on b and its [SEP]. Text that spells a special token ("[SEP]") is bytes like any other
    (split_special_tokens).

    A tokenizers.Tokenizer, saved as tokenizer.json with the model so that transformers reloads it: the ByteLevel
    pre-tokenizer (GPT-2's word split, no prefix space) maps each byte to its symbol, and a BPE model without merges
    over the 256 symbols gives each symbol its id — exactly one id per byte; the ByteLevel decoder turns the ids
    back into the text."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(BYTE_SPECIALS)}
    vocab.update((symbol, len(BYTE_SPECIALS) + b) for b, symbol in enumerate(byte_symbols()))
    backend = Tokenizer(models.BPE(vocab, merges=[], unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in BYTE_SPECIALS])
    backend.encode_special_tokens = True  # not saved in tokenizer.json: split_special_tokens below is
    return PreTrainedTokenizerFast(tokenizer_object=backend, name_or_path=BYTES_SPEC, pad_token="[PAD]",
                                   unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   split_special_tokens=True, clean_up_tokenization_spaces=False,
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def holds_byte_tokenizer(folder: Optional[str | os.PathLike]) -> bool:
    """Whether a model folder's tokenizer.json has byte_tokenizer's vocabulary: a model trained on bytes (textcls
    pretrain or train with --tokenizer bytes), whose embedding rows are bytes already."""
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json" if folder is not None else None
    if path is None or not path.is_file():
        return False
    try:
        vocab = Tokenizer.from_file(str(path)).get_vocab()
    except Exception:  # a file that tokenizers cannot read is not the byte tokenizer
        return False
    return vocab == byte_tokenizer().backend_tokenizer.get_vocab()

# --tokenizer wordpiece:N: a vocabulary learnt from the run's texts.
WORDPIECE_BASE = "minilm-l6"  # its normalizer, pre-tokenizer, special tokens and template: uncased BERT's
LIMIT_ALPHABET = 1000  # characters kept as the initial alphabet (tokenizers' BertWordPieceTokenizer default)


def tokenizer_for_run(tokenize: TokenizeConfig, model: ModelConfig, texts: dict[str, "Dataset"]
                      ) -> "PreTrainedTokenizerFast":
    """The run's tokenizer: --tokenizer or the model's own, or, for `wordpiece:N`, an uncased WordPiece vocabulary
    of N tokens trained on the text (and text_pair) columns of the `texts` splits — reused from the cache when the
    same texts and N trained one before."""
    name = default_tokenizer_name(tokenize, model)
    size = wordpiece_size(name)
    if size is None:
        return load_tokenizer(name)
    return train_wordpiece(texts, size, cache_root(tokenize) / "tokenizers")


def train_wordpiece(texts: dict[str, "Dataset"], size: int, cache: Path) -> "PreTrainedTokenizerFast":
    """An uncased WordPiece tokenizer of `size` tokens learnt from `texts` (tokenizers' WordPieceTrainer, through
    transformers' train_new_from_iterator on the bert-* tokenizer: the same normalization, pre-tokenization and
    special tokens, [PAD] = 0), cached in `cache` under a fingerprint of the texts, the size and the libraries."""
    import tokenizers
    from transformers import AutoTokenizer

    from textcls.io import atomic_dir

    columns = [input_columns(ds, split) for split, ds in texts.items()]
    key = hashlib.sha256(json.dumps([size, LIMIT_ALPHABET, WORDPIECE_BASE, tokenizers.__version__,
                                     [content_hash(ds, cols) for ds, cols in zip(texts.values(), columns)]]).encode()
                         ).hexdigest()[:16]
    folder = cache / f"wordpiece-{size}-{key}"
    if (folder / "tokenizer.json").is_file():
        log.info("tokenizer: the WordPiece vocabulary of %d tokens learnt before from these texts (%s)", size, folder)
        return AutoTokenizer.from_pretrained(folder)
    base = load_tokenizer(WORDPIECE_BASE)
    rows = sum(len(ds) for ds in texts.values())
    log.info("tokenizer: learning a WordPiece vocabulary of %d tokens from %d texts", size, rows)

    def batches() -> Iterator[list[str]]:
        for ds, cols in zip(texts.values(), columns):
            for start in range(0, len(ds), 1000):
                for c in cols:
                    yield ds[c][start:start + 1000]

    tokenizer = base.train_new_from_iterator(batches(), vocab_size=size, length=rows,
                                             limit_alphabet=LIMIT_ALPHABET)
    if len(tokenizer) > size:
        raise TextclsError(f"--tokenizer wordpiece:{size} is smaller than the alphabet of the texts plus the special "
                           f"tokens ({len(tokenizer)}): ask for more tokens, e.g. wordpiece:8000")
    with atomic_dir(folder) as tmp:
        tokenizer.save_pretrained(tmp)
    return tokenizer


def _private_backend(tokenizer: "PreTrainedTokenizerFast") -> "Tokenizer":
    """A copy of the Rust tokenizer with truncation and padding off: tokenizer.json files often carry settings
    (all-MiniLM-L6-v2's truncates to 128) that would otherwise cut texts before we count their wordpieces."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    # Whether text that spells a special token is text (--tokenizer bytes): not part of tokenizer.json.
    backend.encode_special_tokens = tokenizer.backend_tokenizer.encode_special_tokens
    backend.no_truncation()
    backend.no_padding()
    return backend


def _wordpieces(backend: "Tokenizer", texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens, no truncation (encode_batch_fast skips the character offsets)."""
    return [e.ids for e in backend.encode_batch_fast(list(texts), add_special_tokens=False)]


def _special_tokens_template(backend: "Tokenizer", pair: bool) -> tuple:
    """Where the post-processor puts its special tokens, as pieces (segment, token id, token type id):
    segment is 0 or 1 for a text (token id None), None for a special token. BERT's pair template reads
    (None, 101, 0), (0, None, 0), (None, 102, 0), (1, None, 1), (None, 102, 1)."""
    enc = backend.encode("a", "b" if pair else None, add_special_tokens=True)
    pieces = []
    for segment, token_id, type_id in zip(enc.sequence_ids, enc.ids, enc.type_ids):
        if segment is None:
            pieces.append((None, token_id, type_id))
        elif not pieces or pieces[-1][0] != segment:
            pieces.append((segment, None, type_id))
    return tuple(pieces)


def longest_first(n_a: int, n_b: int, budget: int) -> tuple[int, int]:
    """How many wordpieces each text of a pair keeps: the longer one is cut first, and when both must be cut each
    keeps half. The same arithmetic as the tokenizers library's LongestFirst, so that `head` equals
    transformers' truncation="longest_first" exactly."""
    if n_a + n_b <= budget:
        return n_a, n_b
    swap = n_a > n_b
    short, long = (n_b, n_a) if swap else (n_a, n_b)
    long = short if short > budget else max(short, budget - short)
    if short + long > budget:
        short, long = budget // 2, budget // 2 + budget % 2
    return (long, short) if swap else (short, long)


def windows(n: int, size: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) of the windows of `size` wordpieces that cover `n`, each sharing `stride` with the one before
    (as transformers' return_overflowing_tokens with stride): the last one ends at n; a short text is one window."""
    step = size - stride
    starts = range(0, max(n - stride, 1), step) if n > size else [0]
    return [(start, min(start + size, n)) for start in starts]


class ExampleEncoder:
    """Texts (and second texts of pairs) → the model's inputs, exactly as training gets them.

    Returns the columns input_ids, token_type_ids, length (tokens after truncation, specials included) and
    num_wordpieces (before truncation, no specials); with truncation "chunks", one row per window and doc_id, the
    index of the text it is a window of. Picklable, so `Dataset.map(num_proc=N)` can ship it."""

    def __init__(self, tokenizer: "PreTrainedTokenizerFast", cfg: TokenizeConfig, pair: bool):
        self.backend = _private_backend(tokenizer)
        self.template = _special_tokens_template(self.backend, pair)
        self.pair = pair
        self.truncation = cfg.truncation
        self.head_tokens = cfg.head_tokens
        self.stride = cfg.stride
        specials = [self.backend.id_to_token(t) for seg, t, _ in self.template if seg is None]
        self.num_special = len(specials)
        self.budget = cfg.max_length - len(specials)  # wordpieces of text that fit
        what = "a pair" if pair else "a text"
        if self.budget < 1:
            raise TextclsError(f"--max-length {cfg.max_length} leaves no room for text: the tokenizer adds "
                               f"{len(specials)} special tokens to {what} ({' '.join(specials)}); use at least "
                               f"{len(specials) + 1}")
        if cfg.truncation == "head+tail" and not 0 <= cfg.head_tokens < self.budget:
            raise TextclsError(f"--head-tokens {cfg.head_tokens} does not fit: with --max-length {cfg.max_length} "
                               f"{what} has room for {self.budget} wordpieces besides its {len(specials)} special "
                               f"tokens, and head+tail keeps the first --head-tokens and the last {self.budget} - "
                               f"--head-tokens; use 0 to {self.budget - 1}")
        # Chunked pairs keep the first text whole up to half the budget (a question), and cut the second into
        # windows (the document), as transformers' question answering does with truncation="only_second".
        window = self.budget - self.budget // 2 if pair else self.budget
        if cfg.truncation == "chunks" and cfg.stride >= window:
            raise TextclsError(f"--stride {cfg.stride} does not fit: with --max-length {cfg.max_length} a window "
                               f"of {what} holds {window} wordpieces{' of its second text' if pair else ''}, and "
                               f"consecutive windows share --stride of them; use 0 to {window - 1}")

    def _cut(self, ids: list[int], keep: int) -> list[int]:
        """The `keep` wordpieces of `ids` that the truncation strategy keeps."""
        if len(ids) <= keep:
            return ids
        if self.truncation in ("head", "chunks"):
            return ids[:keep]
        head = min(self.head_tokens, keep) if self.truncation == "head+tail" else 0  # tail: no head
        return ids[:head] + ids[len(ids) - (keep - head):]

    def assemble(self, segments: tuple[list[int], ...]) -> tuple[list[int], list[int]]:
        """input_ids and token_type_ids of one row: the segments' wordpieces laid out by the special-tokens template."""
        ids: list[int] = []
        types: list[int] = []
        for segment, token_id, type_id in self.template:
            piece = [token_id] if segment is None else segments[segment]
            ids += piece
            types += [type_id] * len(piece)
        return ids, types

    def row_segments(self, a: list[int], b: Optional[list[int]]) -> list[tuple[list[int], ...]]:
        """The wordpieces of each row a text (or pair) becomes: one row, or with chunks one per window. Any items
        will do in place of wordpiece ids (explanations pass positions, to know where each kept wordpiece came from)."""
        if self.truncation == "chunks":
            if b is None:
                return [(a[start:end],) for start, end in windows(len(a), self.budget, self.stride)]
            a = a[:self.budget // 2]
            return [(a, b[start:end]) for start, end in windows(len(b), self.budget - len(a), self.stride)]
        if b is None:
            return [(self._cut(a, self.budget),)]
        keep_a, keep_b = longest_first(len(a), len(b), self.budget)
        return [(self._cut(a, keep_a), self._cut(b, keep_b))]

    def __call__(self, texts: Sequence[str], pairs: Optional[Sequence[str]] = None) -> dict[str, list]:
        if (pairs is not None) != self.pair:
            raise ValueError("this encoder was built for " + ("pairs" if self.pair else "single texts"))
        first = _wordpieces(self.backend, texts)
        second = _wordpieces(self.backend, pairs) if pairs is not None else [None] * len(first)
        out: dict[str, list] = {name: [] for name in self.columns()}
        for doc, (a, b) in enumerate(zip(first, second)):
            num_wordpieces = len(a) + (len(b) if b is not None else 0)
            for segments in self.row_segments(a, b):
                ids, types = self.assemble(segments)
                out["input_ids"].append(ids)
                out["token_type_ids"].append(types)
                out["length"].append(len(ids))
                out["num_wordpieces"].append(num_wordpieces)
                if "doc_id" in out:
                    out["doc_id"].append(doc)
        return out

    def columns(self) -> tuple[str, ...]:
        return MODEL_COLUMNS + (("doc_id",) if self.truncation == "chunks" else ())

    def settings(self) -> dict:
        """Everything of this encoder that decides its output, for the cache fingerprint."""
        digest = hashlib.blake2b(self.backend.to_str().encode(), digest_size=16).hexdigest()
        out = {"tokenizer": digest, "budget": self.budget, "template": self.template, "pair": self.pair,
               "truncation": self.truncation}
        if self.backend.encode_special_tokens:
            out["split_special_tokens"] = True
        if self.truncation == "head+tail":
            out["head_tokens"] = self.head_tokens
        if self.truncation == "chunks":
            out["stride"] = self.stride
        return out


class _DocumentWindows:
    """`Dataset.map` function for chunked texts: a batch of rows becomes its windows, each with its label and the
    index of its row (doc_id). Unlike the 1:1 map, every column is made here: rows change in number."""

    def __init__(self, encoder: ExampleEncoder):
        self.encoder = encoder

    def __call__(self, batch: dict, indices: list[int]) -> dict[str, list]:
        out = self.encoder(batch["text"], batch.get("text_pair"))
        local = out["doc_id"]  # each window's position in the batch
        out["doc_id"] = [indices[d] for d in local]  # ... and its row in the split
        if "label" in batch:
            out["label"] = [batch["label"][d] for d in local]
        return out


# --------------------------------------------------------------------------------------------- cached map

def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/textcls, else ~/.cache/textcls (the XDG rule that platformdirs follows on Linux)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "textcls"


def cache_root(cfg: TokenizeConfig) -> Path:
    """--cache-dir, or the default cache: the folder a run's caches live under (tokenized/, tokenizers/, teacher/)."""
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()


def content_hash(ds: "Dataset", columns: Sequence[str]) -> str:
    """A digest of the values of `columns` (after any row selection), read straight from the Arrow buffers:
    IMDB's 50k reviews hash in about a tenth of a second. The rows are first gathered into one chunk per column
    (a selection comes back as one slice per row, each sharing its parent's buffers); offsets and lengths go in
    too, because a single slice still shares them."""
    table = ds.with_format("arrow", columns=list(columns))[:].combine_chunks()
    h = hashlib.blake2b(digest_size=16)
    for name in columns:
        h.update(f"{name}|{ds.features[name]!r}|{table.schema.field(name).type}".encode())
        for chunk in table.column(name).chunks:
            h.update(f"|{chunk.offset}|{len(chunk)}".encode())
            for buf in chunk.buffers():
                h.update(f"|{0 if buf is None else buf.size}|".encode())
                if buf is not None:
                    h.update(buf)
    return h.hexdigest()


def input_columns(ds: "Dataset", split: str) -> list[str]:
    """The text columns of a standard split (load_data's): text, and text_pair for pairs."""
    if "text" not in ds.column_names:
        raise TextclsError(f"split {split!r} has no 'text' column to tokenize; its columns are: "
                           f"{', '.join(ds.column_names)}")
    return ["text", "text_pair"] if "text_pair" in ds.column_names else ["text"]


def file_checksum(path: Path) -> str:
    """A digest of a file's bytes (IMDB's tokenized splits, ~70 MB, in about a tenth of a second)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _load_cached(manifest: Path) -> Optional["Dataset"]:
    """The cached split when its manifest exists and every file it lists is there, readable and unchanged since it
    was written (the checksums in the manifest), else None: a damaged entry is tokenized again, with a warning."""
    from datasets import Dataset, concatenate_datasets

    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
        paths = [manifest.parent / name for name in info["files"]]
        changed = [p.name for p in paths if file_checksum(p) != info["checksums"][p.name]]
        if changed:
            log.warning("the tokenization cache %s was changed after it was written (checksum of %s); tokenizing "
                        "again", manifest, ", ".join(changed))
            return None
        parts = [Dataset.from_file(str(p)) for p in paths]
    except (OSError, ValueError, KeyError, TypeError):  # missing, half-deleted or unreadable: tokenize again
        return None
    ds = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    return ds if len(ds) == info["rows"] else None


def _tokenize_split(split: str, ds: "Dataset", encoder: ExampleEncoder, cfg: TokenizeConfig, cache: Path,
                    key: dict) -> "Dataset":
    from datasets import Features, List, Value

    from textcls.io import atomic_write_text, writing

    fingerprint = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8).hexdigest()
    stem = f"{split}-{fingerprint}"
    manifest = cache / f"{stem}.json"
    cached = _load_cached(manifest)
    if cached is not None:
        files = [f["filename"] for f in cached.cache_files]
        log.info("tokenized %s: loaded from cache %s", split,
                 files[0] if len(files) == 1 else f"{manifest} ({len(files)} files)")
        return cached

    # Whatever is left under this name (shards of a killed run) is not trusted: start clean.
    manifest.unlink(missing_ok=True)
    for stale in cache.glob(f"{stem}*.arrow"):
        stale.unlink()
    columns = {"input_ids": List(Value("int32")), "token_type_ids": List(Value("int8")), "length": Value("int32"),
               "num_wordpieces": Value("int32")}
    if "label" in ds.column_names:  # kept as it is (a ClassLabel keeps its names)
        columns = {"label": ds.features["label"], **columns}
    inputs = input_columns(ds, split)
    if encoder.truncation == "chunks":  # rows become windows: the map makes every column, doc_id too
        mapping = dict(function=_DocumentWindows(encoder), with_indices=True, remove_columns=ds.column_names,
                       features=Features({**columns, "doc_id": Value("int64")}))
    else:
        mapping = dict(function=encoder, input_columns=inputs, features=Features(columns),
                       remove_columns=[c for c in ds.column_names if c != "label"])
    log.info("tokenizing %s: %d rows (num_proc=%d) into %s", split, len(ds), cfg.num_proc, cache)
    # Written into a folder of its own, then moved into the cache: a failure (a full disk midway) removes that
    # folder whole, datasets' temp files with it, and a run tokenizing into the same cache is never touched.
    work = cache / f".{stem}.tmp"
    with writing(cache, "nothing half-written was kept; choose another --cache-dir, or free some space"):
        shutil.rmtree(work, ignore_errors=True)  # what a killed run left
        work.mkdir(parents=True)
        try:
            with _datasets_progress_bars(log.isEnabledFor(logging.INFO)):
                out = ds.map(**mapping, batched=True, num_proc=cfg.num_proc if cfg.num_proc > 1 else None,
                             cache_file_name=str(work / f"{stem}.arrow"), load_from_cache_file=False,
                             new_fingerprint=fingerprint, desc=f"tokenizing {split}")
            files, rows = [Path(f["filename"]).name for f in out.cache_files], len(out)
            del out  # its memory maps point into the work folder
            for name in files:
                os.replace(work / name, cache / name)
            # Written last and atomically: it exists only when every file it names is complete.
            atomic_write_text(manifest, json.dumps({"format": CACHE_FORMAT, "split": split, "rows": rows,
                                                    "files": files, "checksums": {f: file_checksum(cache / f)
                                                                                  for f in files},
                                                    "key": key}, indent=1) + "\n")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    out = _load_cached(manifest)  # the files where they stay, so that DataLoader workers can reopen them
    if out is None:
        raise TextclsError(f"the tokenization cache {str(manifest)!r} could not be read back after it was written; "
                           f"check the folder (--cache-dir)")
    return out


@contextlib.contextmanager
def _datasets_progress_bars(show: bool) -> Iterator[None]:
    """datasets draws its own progress bars, switched globally; they follow textcls's log level as the training bar
    does (`textcls -q` hides them), and the global switch is put back afterwards."""
    import datasets

    hidden = datasets.are_progress_bars_disabled()
    (datasets.enable_progress_bars if show else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (datasets.disable_progress_bars if hidden else datasets.enable_progress_bars)()


def tokenize_data(dsd: "DatasetDict", tokenizer: "PreTrainedTokenizerFast", cfg: TokenizeConfig) -> "DatasetDict":
    """Every split of `dsd` as model inputs (columns input_ids, token_type_ids, length, num_wordpieces, and label
    when there is one), cached under cfg.cache_dir: a second run with the same rows, vocabulary and settings
    loads the Arrow files instead of tokenizing."""
    from datasets import DatasetDict

    cache = cache_root(cfg) / "tokenized"
    encoders: dict[bool, tuple[ExampleEncoder, dict]] = {}  # single texts / pairs: the encoder, its settings
    out = {}
    for split, ds in dsd.items():
        columns = input_columns(ds, split)
        pair = "text_pair" in columns
        if pair not in encoders:
            encoder = ExampleEncoder(tokenizer, cfg, pair)
            encoders[pair] = encoder, encoder.settings()
        encoder, settings = encoders[pair]
        data = content_hash(ds, columns + ["label"] * ("label" in ds.column_names))
        key = {"format": CACHE_FORMAT, "data": data, **settings}
        out[split] = _tokenize_split(split, ds, encoder, cfg, cache, key)
    return DatasetDict(out)
