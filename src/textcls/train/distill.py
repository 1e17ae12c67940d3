"""`textcls distill`: knowledge distillation (Hinton et al. 2015) of a fine-tuned teacher into a student classifier.

The student trains with every flag, checkpoint, resume, plot and export of `textcls train`; only its objective
differs. On a labelled row: A * cross-entropy with the label + (1 - A) * T^2 * KL(teacher || student), both softened
by the temperature T; on an unlabelled row (the `unsupervised` split: IMDB ships 50,000 reviews for this) the teacher
term alone. The T^2 keeps the soft term's gradients on the scale of the hard one's as T changes (Hinton et al.).
A multi-label student does the same label by label (binary cross-entropy, and the binary KL to the teacher's
sigmoids at T); a regression student learns A * squared error to the target + (1 - A) * squared error to the
teacher's prediction (no temperature: a value has no distribution to soften).

The teacher's logits are computed once, with its own tokenizer and lengths (it may differ from the student's), in
one batched, length-sorted pass (`TrainedModel.logits`), and cached under a fingerprint of the teacher's weights and
tokenize settings and of the texts: a second run starts at once, and a killed run never leaves a half-written cache
(the file is written beside and renamed).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
import torch.nn.functional as F

from textcls.config import RunConfig
from textcls.errors import TextclsError
from textcls.train.data import PreparedData
from textcls.train.loop import Trainer, run_recipe

if TYPE_CHECKING:
    from datasets import Dataset

    from textcls.infer.model import TrainedModel

log = logging.getLogger("textcls")


def distillation_loss(logits: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float,
                      alpha: float, class_weights: Optional[list[float]] = None, problem_type: str = "single-label",
                      labelled: Optional[torch.Tensor] = None) -> torch.Tensor:
    """logits, teacher: (B, C); labels: (B,) with -1 for unlabelled rows. The mean over the batch of
    alpha * CE(logits, label) (labelled rows only) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(logits/T)).
    class_weights (C,): each labelled row's cross-entropy times its class's weight (the teacher's part is not
    weighted: it carries no label). Multi-label and regression: `problem_distillation_loss`."""
    if problem_type != "single-label":
        return problem_distillation_loss(logits, teacher, labels, labelled, temperature, alpha, problem_type)
    T = temperature
    student = F.log_softmax(logits.float() / T, dim=-1)  # (B, C)
    target = F.log_softmax(teacher.float() / T, dim=-1)  # (B, C)
    soft = F.kl_div(student, target, log_target=True, reduction="batchmean") * T * T
    labelled = labels >= 0  # (B,)
    if alpha == 0 or not labelled.any():
        return (1 - alpha) * soft
    weight = None if class_weights is None else logits.new_tensor(class_weights, dtype=torch.float32)
    hard = F.cross_entropy(logits.float()[labelled], labels[labelled], weight=weight, reduction="sum") / len(labels)
    return alpha * hard + (1 - alpha) * soft


def problem_distillation_loss(logits: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                              labelled: torch.Tensor, temperature: float, alpha: float,
                              problem_type: str) -> torch.Tensor:
    """The mean over the batch of A * hard + (1 - A) * soft. logits, teacher: (B, L); labelled: (B,) bool.
    multi-label, labels (B, L) 0/1: hard = binary cross-entropy per label (mean over labels, labelled rows only);
      soft = T^2 * the binary KL(teacher || student) per label of the sigmoids at T (mean over labels).
    regression, labels (B,): hard = squared error to the target (labelled rows); soft = squared error to the
      teacher's value."""
    x, t = logits.float(), teacher.float()
    B = len(x)
    if problem_type == "regression":
        soft = F.mse_loss(x[:, 0], t[:, 0])
        hard = ((x[:, 0] - labels.float()) ** 2)[labelled].sum() / B
    else:
        T = temperature
        target = torch.sigmoid(t / T)  # (B, L)
        # BCE(student, p) - BCE(p, p) is the binary KL(p || student): the same gradient, and 0 when they agree
        soft = (F.binary_cross_entropy_with_logits(x / T, target) -
                F.binary_cross_entropy_with_logits(t / T, target)) * T * T
        hard = F.binary_cross_entropy_with_logits(x, labels.float(), reduction="none").mean(1)[labelled].sum() / B
    return alpha * hard + (1 - alpha) * soft


class TeacherCollator:
    """The student's batches (`Collator`) with each row's teacher logits: "teacher_logits" (B, C) float, and for
    multi-label and regression, whose unlabelled rows hold no label, "labelled" (B,) bool beside labels that hold a
    placeholder (no label set, 0.0) on those rows."""

    def __init__(self, collator, problem_type: str = "single-label"):
        self.collator = collator
        self.problem_type = problem_type

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if "teacher_logits" not in rows[0]:  # validation and test: the student's own batches
            return self.collator(rows)
        labelled = [row["label"] is not None for row in rows]
        if self.problem_type != "single-label":
            empty = [] if self.problem_type == "multi-label" else 0.0
            rows = [row if ok else {**row, "label": empty} for row, ok in zip(rows, labelled)]
        batch = self.collator(rows)
        batch["teacher_logits"] = torch.tensor([row["teacher_logits"] for row in rows], dtype=torch.float32)
        if self.problem_type != "single-label":
            batch["labelled"] = torch.tensor(labelled)  # (B,)
        return batch


class DistillData(PreparedData):
    def collator(self, model: torch.nn.Module):
        return TeacherCollator(super().collator(model), self.problem_type)


def _teacher_fingerprint(teacher: "TrainedModel") -> str:
    """The teacher's weights file (its bytes), its tokenize settings and labels, and the precision it runs in."""
    import dataclasses

    from textcls.data.tokenize import file_checksum
    from textcls.hub import weights_file

    settings = dataclasses.asdict(teacher.tokenize_cfg) | {"cache_dir": None, "num_proc": None}
    return json.dumps([file_checksum(weights_file(teacher.folder)), settings, teacher.label_names, teacher.precision],
                      sort_keys=True)


def teacher_logits(teacher: "TrainedModel", ds: "Dataset", split: str, cache: Path, batch_size: int) -> np.ndarray:
    """(N, C) logits of `teacher` on the texts (and pairs) of `ds`, the split `split`, in row order; from the cache
    when the same teacher saw the same rows before."""
    from textcls.data.tokenize import content_hash, input_columns
    from textcls.io import atomic_path

    columns = input_columns(ds, split)
    key = hashlib.sha256(f"{_teacher_fingerprint(teacher)} {content_hash(ds, columns)}".encode()).hexdigest()[:20]
    path = cache / f"teacher-logits-{key}.npy"
    if path.is_file():
        log.info("teacher logits for %d texts: from the cache (%s)", len(ds), path)
        return np.load(path)
    pairs = ds["text_pair"] if "text_pair" in columns else None
    log.info("teacher logits for %d texts: computing them once with %s (cached in %s)", len(ds), teacher.folder,
             cache)
    logits = teacher.logits(ds["text"], pairs, batch_size=batch_size).numpy().astype(np.float32)  # (N, C)
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, logits)
    return logits


def _teacher_columns(teacher: "TrainedModel", data_labels: list[str], data: str) -> np.ndarray:
    """For each data label id, the teacher's output: by name, or by position when the teacher's labels are unnamed
    (LABEL_0, ...); the label sets must be the same."""
    from textcls.infer.evaluate import model_label_ids

    if len(teacher.label_names) != len(data_labels):
        raise TextclsError(f"the teacher {str(teacher.folder)!r} has {len(teacher.label_names)} labels "
                           f"({', '.join(teacher.label_names)}) but {data!r} has {len(data_labels)} "
                           f"({', '.join(data_labels)}); distill from a teacher trained on these labels")
    return model_label_ids(data_labels, teacher.label_names, data)


def prepare_distillation_data(cfg: RunConfig) -> DistillData:
    """The student's tokenized splits (train + the unlabelled splits, labels -1 there, each row with its teacher's
    logits in data label order; validation and test as `train` has them) and its tokenizer."""
    from datasets import DatasetDict, concatenate_datasets

    from textcls.data.sources import label_names, load_data, problem_type
    from textcls.data.tokenize import cache_root, tokenize_data, tokenizer_for_run
    from textcls.infer.model import load_trained

    dc = cfg.distill
    dsd = load_data(cfg.data)
    problem = problem_type(dsd)
    unlabelled = dc.unlabelled_splits if dc.unlabelled_splits is not None else \
        [s for s in ("unsupervised",) if s in dsd]
    missing = [s for s in unlabelled if s not in dsd]
    if missing:
        raise TextclsError(f"--unlabelled-splits {' '.join(missing)}: {cfg.data.data!r} has no such split; its "
                           f"splits are: {', '.join(dsd)}")
    names = label_names(dsd)
    teacher = load_trained(Path(dc.teacher), precision=cfg.train.mixed_precision)
    # Data is prepared by the main process first (main_process_first): it alone computes the teacher's logits, and
    # the other processes read them from its cache.
    teacher.split_over_processes = False
    if teacher.problem_type != problem:
        raise TextclsError(f"the teacher {str(teacher.folder)!r} is a {teacher.problem_type} model and "
                           f"{cfg.data.data!r} is {problem} data; distill from a teacher of the same problem type")
    teacher.check_data(pairs="text_pair" in dsd["train"].column_names)
    # a regression's one output is its value, whatever the teacher named it
    columns = np.zeros(1, dtype=np.int64) if problem == "regression" else _teacher_columns(teacher, names,
                                                                                            cfg.data.data)
    learn_from = ["train", *[s for s in unlabelled if s != "train"]]
    tokenizer = tokenizer_for_run(cfg.tokenize, cfg.model, {s: dsd[s] for s in learn_from})
    keep = [s for s in dsd if s in learn_from or s in ("validation", "test")]
    tokenized = tokenize_data(DatasetDict({s: dsd[s] for s in keep}), tokenizer, cfg.tokenize)
    cache = cache_root(cfg.tokenize) / "teacher"
    logits = {s: teacher_logits(teacher, dsd[s], s, cache, dc.teacher_batch_size)[:, columns] for s in learn_from}
    if problem == "single-label":
        agree = np.mean(logits["train"].argmax(1) == np.asarray(dsd["train"]["label"]))
        log.info("the teacher agrees with %.2f%% of the training labels", 100 * agree)
    log.info("the student learns from %s", ", ".join(f"{s} ({len(dsd[s]):,})" for s in learn_from))
    parts = []
    for split in learn_from:
        part = tokenized[split].add_column("teacher_logits", logits[split].tolist())  # (N, C) in data label order
        if split != "train":  # unlabelled texts: the teacher's term only, whatever labels the split has
            part = part.map(lambda row: {"label": -1 if problem == "single-label" else None})
        parts.append(part)
    out = DatasetDict({"train": concatenate_datasets(parts),
                       **{s: tokenized[s] for s in keep if s not in learn_from}})
    del teacher
    return DistillData(out, tokenizer, names, cfg.tokenize, num_workers=cfg.train.num_workers, problem_type=problem)


class DistillTrainer(Trainer):
    """Trainer's loop, data and model with the distillation objective."""

    command = "distill"

    def prepare_data(self) -> DistillData:
        return prepare_distillation_data(self.cfg)

    def loss(self, batch: dict) -> torch.Tensor:
        teacher = batch.pop("teacher_logits")  # (B, C)
        labels = batch.pop("labels")  # (B,), -1 for unlabelled rows; multi-label (B, L) and regression (B,)
        labelled = batch.pop("labelled", None)  # (B,) bool, multi-label and regression
        logits = self.model(**batch).logits  # (B, C)
        return distillation_loss(logits, teacher, labels, self.cfg.distill.temperature, self.cfg.distill.alpha,
                                 self.class_weights, self.problem_type, labelled)


def distill(cfg: RunConfig, output: Optional[Path] = None, resume: Optional[Path] = None) -> dict:
    """Distill `cfg.distill.teacher` into the student `cfg.model` on `cfg.data` into a new run directory (or
    continue the one at `resume`), as `textcls.train.loop.train` does; returns the summary."""
    if not cfg.distill.teacher:
        raise TextclsError("no teacher: give --teacher MODEL (a fine-tuned classifier: a run, its model/ folder or a "
                           "transformers folder)")
    if cfg.tokenize.truncation == "chunks":
        raise TextclsError("distill learns one teacher distribution per text; --truncation chunks (several windows "
                           "per text) is not supported: use head or head+tail")
    from textcls.infer.model import model_folder
    model_folder(Path(cfg.distill.teacher))  # a missing teacher fails before anything is read
    return run_recipe(DistillTrainer, cfg, output, resume)
