"""A trained classifier, ready for inference: loaded with its tokenizer and the settings it was trained with, and
the one batched forward that evaluate, predict (and later serve and distillation) use.

The forward sorts the rows by length (the least padding), runs them in batches, and gives the logits back in input
order; windows of chunked documents (rows with a `doc_id`) are averaged into one row per document. Under several
processes (torchrun, accelerate launch: an initialised torch.distributed process group) each process runs its share
of the batches and every process gets all the logits.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch

from textcls.config import TokenizeConfig, section_from_dict
from textcls.errors import TextclsError

if TYPE_CHECKING:
    from textcls.data.batching import Collator
    from textcls.data.tokenize import ExampleEncoder

log = logging.getLogger("textcls")


@dataclass
class TrainedModel:
    model: torch.nn.Module
    tokenizer: object
    label_names: list[str]
    tokenize_cfg: TokenizeConfig
    folder: Path
    precision: str = "no"  # "bf16": the weights in bf16 (load_trained casts them; resolved: never "auto")
    # Under several processes, each runs a share of the batches: every process must then call forward. False: this
    # process runs them all alone (distillation: the main process computes the teacher's logits for the others).
    split_over_processes: bool = True
    problem_type: str = "single-label"  # or multi-label, regression: what the logits mean
    thresholds: Optional[list[float]] = None  # multi-label: each label's decision threshold (textcls.json)
    _encoders: dict = field(default_factory=dict, repr=False)

    def with_threshold(self, threshold: Optional[float]) -> "TrainedModel":
        """This multi-label model deciding at `threshold` for every label (--threshold) instead of its saved
        thresholds; None: as it is. A model of another problem type has no threshold (a TextclsError)."""
        if threshold is not None:
            if self.problem_type != "multi-label":
                raise TextclsError(f"--threshold is the decision threshold of a multi-label model; "
                                   f"{str(self.folder)!r} is {self.problem_type}")
            self.thresholds = [threshold] * len(self.label_names)
        return self

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """What the logits (N, num_labels) say: class probabilities (softmax; multi-label: each label's sigmoid), or
        a regression's predicted values (N, 1) as they are."""
        if self.problem_type == "multi-label":
            return torch.sigmoid(logits)
        return logits if self.problem_type == "regression" else logits.softmax(-1)

    def encoder(self, pair: bool) -> "ExampleEncoder":
        """The ExampleEncoder for single texts or pairs, made once: texts are tokenized as in training."""
        from textcls.data.tokenize import ExampleEncoder

        if pair not in self._encoders:
            self._encoders[pair] = ExampleEncoder(self.tokenizer, self.tokenize_cfg, pair)
        return self._encoders[pair]

    def collator(self) -> "Collator":
        from textcls.data.batching import Collator
        return Collator.for_model(self.tokenize_cfg, self.tokenizer, self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def check_data(self, pairs: bool) -> None:
        """Whether the model's attention options work on single texts or pairs (a TextclsError if not)."""
        attention = self.model.encoder.attention
        attention.check_data(attention.options, pairs)

    def run_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(b, num_labels) float logits, on the CPU, of one collated batch (input_ids, attention_mask and
        token_type_ids, (b, T) each). The one step another backend replaces (ONNX Runtime: infer/onnx.py)."""
        device = self.device
        inputs = {k: v.to(device) for k, v in batch.items()}  # (b, T) each
        return self.model.eval()(**inputs).logits.float().cpu()

    def logits(self, texts: Sequence[str], pairs: Optional[Sequence[str]] = None,
               batch_size: int = 64) -> torch.Tensor:
        """Logits (N, num_labels) for `texts` (and their `pairs`), tokenized as in training, in the input order."""
        self.check_data(pairs is not None)
        encoded = self.encoder(pair=pairs is not None)(texts, pairs)
        rows = [dict(zip(encoded, values)) for values in zip(*encoded.values())]
        return self.forward(rows, encoded["length"], batch_size)

    @torch.inference_mode()
    def forward(self, rows: Sequence[dict], lengths: Sequence[int], batch_size: int) -> torch.Tensor:
        """Logits for tokenized rows (a list of dicts or a tokenized Dataset: input_ids, token_type_ids, and doc_id
        for windows of chunked documents), one row per document, in input order. Batches are length-sorted; under
        several processes each runs every world-size-th batch, and all get the gathered logits."""
        from torch.utils.data import DataLoader

        from textcls.data.batching import restore_order, sorted_batches

        rank, world = process_rank() if self.split_over_processes else (0, 1)
        batches = sorted_batches(lengths, batch_size)
        shares = [batches[r::world] for r in range(world)]  # longest first: every process gets long and short ones
        loader = DataLoader(rows, batch_sampler=shares[rank], collate_fn=self.collator())
        logits, doc_ids = [], []
        for batch in loader:
            batch.pop("labels", None)
            if "doc_ids" in batch:
                doc_ids.append(batch.pop("doc_ids"))
            logits.append(self.run_batch(batch))  # (b, num_labels)
        # A process may have no batch (fewer batches than processes): it adds no rows.
        out = torch.cat(logits) if logits else torch.empty(0, len(self.label_names))  # (rows run here, C)
        docs = torch.cat(doc_ids) if doc_ids else None  # (rows run here,)
        if world > 1:
            out, docs = _gather(out, docs)  # (rows of all shares, C), in rank order
        ran = [b for share in shares for b in share]  # the batches in the order of `out`'s rows
        out = restore_order(ran, out)
        if docs is not None:
            out = mean_by_document(out, restore_order(ran, docs))
        return out


def process_rank() -> tuple[int, int]:
    """(rank, number of processes) of the torch.distributed process group that textcls's commands initialise under
    torchrun or accelerate launch (accelerate's PartialState); (0, 1) for a process alone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def main_process_first():
    """The main process runs the block first, then the others (they find what it cached): accelerate's
    main_process_first for any process group, and nothing for a process alone."""
    import torch.distributed as dist

    rank, world = process_rank()
    if world > 1 and rank > 0:
        dist.barrier()
    yield
    if world > 1 and rank == 0:
        dist.barrier()


def _gather(logits: torch.Tensor, doc_ids: Optional[torch.Tensor]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Every process's (n_r, C) logits and (n_r,) doc ids (None where it has no windows), concatenated in rank
    order: (sum n_r, C) and (sum n_r,) or None."""
    import torch.distributed as dist

    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (logits, doc_ids))
    docs = [d for _, d in parts if d is not None]
    return torch.cat([lg for lg, _ in parts]), torch.cat(docs) if docs else None


def mean_by_document(logits: torch.Tensor, doc_ids: torch.Tensor) -> torch.Tensor:
    """(N windows, C) logits, (N,) document ids 0..D-1 → (D, C): each document's mean over its windows."""
    num_docs = int(doc_ids.max()) + 1 if len(doc_ids) else 0
    sums = torch.zeros(num_docs, logits.shape[1], dtype=logits.dtype).index_add_(0, doc_ids, logits)  # (D, C)
    counts = torch.bincount(doc_ids, minlength=num_docs).clamp(min=1).unsqueeze(1)  # (D, 1)
    return sums / counts


def model_folder(path: Path) -> Path:
    """A run directory's exported model, or the folder itself; either must hold weights."""
    from textcls.hub import WEIGHT_FILES, weights_file
    from textcls.train.rundir import model_of

    if not path.exists():
        raise TextclsError(f"model {str(path)!r} does not exist; give a run directory or an exported model folder")
    path = model_of(path)
    if path.is_dir():
        if (path / "model.onnx").is_file() and not any((path / name).is_file() for name in WEIGHT_FILES):
            raise TextclsError(f"{str(path)!r} is an ONNX export (model.onnx, no torch weights): predict from it with "
                               f"--backend onnx")
        weights_file(path)
    return path


def load_trained(path: Path, tokenizer: Optional[str] = None, device: Optional[torch.device] = None,
                 attention: Optional[str] = None, attention_overrides: Optional[dict] = None,
                 precision: str = "auto") -> TrainedModel:
    """A classifier folder (a textcls run or its exported model, or a transformers BERT classifier) ready for
    inference, with its own tokenizer unless `tokenizer` names another (for a folder saved without one), and its
    own attention unless `attention` names another mechanism or `attention_overrides` other options. `precision`
    is --mixed-precision's: "auto" runs bf16 where the hardware computes bf16 natively, fp32 elsewhere. In bf16 the
    weights themselves are cast (not autocast, as training does): with no optimizer to keep fp32 master weights for,
    every activation stays bf16 and no layer casts its input again, 10% faster than autocast on bert-tiny's model
    (an ad-hoc comparison; BENCHMARKS.md), the labels the same; LayerNorm and softmax accumulate in fp32
    inside their bf16 kernels."""
    from textcls.data.tokenize import has_tokenizer, load_tokenizer
    from textcls.device import default_device, describe_precision, resolve_mixed_precision
    from textcls.model import load_classifier
    from textcls.model.hf import TEXTCLS_JSON, read_json

    folder = model_folder(Path(path))
    if tokenizer is None and not has_tokenizer(folder):
        raise TextclsError(f"model folder {str(folder)!r} holds no tokenizer (tokenizer.json or vocab.txt); give the "
                           f"one it was trained with, e.g. --tokenizer minilm-l6 (the bert-* presets' vocabulary)")
    precision = resolve_mixed_precision(precision)
    model, label_names, _ = load_classifier(folder, attention=attention, attention_overrides=attention_overrides)
    extra = read_json(folder / TEXTCLS_JSON) if (folder / TEXTCLS_JSON).is_file() else {}
    saved = extra.get("tokenize")
    if saved:
        tokenize_cfg = section_from_dict(TokenizeConfig, saved)
    else:  # a transformers folder: texts are cut to what the model can see, from the head, as transformers does
        tokenize_cfg = TokenizeConfig(max_length=model.encoder.config.max_positions)
    # The machine that trained the model kept its tokenized data there; here the default cache is the place.
    tokenize_cfg.cache_dir, tokenize_cfg.num_proc = None, 1
    model.to(device or default_device(), dtype=torch.bfloat16 if precision == "bf16" else None).eval()
    log.debug("inference precision: %s", describe_precision(precision, inference=True))
    return TrainedModel(model, load_tokenizer(tokenizer or str(folder)), label_names, tokenize_cfg, folder, precision,
                        problem_type=model.problem_type,
                        thresholds=saved_thresholds(extra, label_names, model.problem_type))


def saved_thresholds(extra: dict, label_names: list[str], problem_type: str) -> Optional[list[float]]:
    """A multi-label model's decision thresholds in label order, from its textcls.json (0.5 where none is saved: a
    transformers folder); None for the other problem types."""
    if problem_type != "multi-label":
        return None
    saved = extra.get("thresholds") or {}
    return [float(saved.get(name, 0.5)) for name in label_names]


def document_labels(labels: np.ndarray, doc_ids: Optional[np.ndarray]) -> np.ndarray:
    """One label per document: the rows' labels as they are, or for windows the label of each document's windows."""
    if doc_ids is None:
        return labels
    out = np.empty((int(doc_ids.max()) + 1 if len(doc_ids) else 0, *labels.shape[1:]), dtype=labels.dtype)
    out[doc_ids] = labels
    return out
