"""Fine-tuning recipe: one readable class, setup / train / evaluate / save (in the spirit of torchtune's recipes).
What depends on the model (its data, building it, its evaluation, its export) is in a few methods that another
recipe overrides: masked-LM pretraining (pretrain.py) is this loop with another model.

It runs unchanged on a CPU, one GPU, or several processes started by `accelerate launch` or `torchrun`: accelerate
wraps the model in DDP, shards the batches and all-reduces the gradients.

Batches are global: the sampler cuts batches of `batch_size x processes` examples and accelerate gives each process
its slice (`split_batches`), so every optimizer step sees the same examples whatever the process count, and the
order depends on (seed, epoch) only. Steps count optimizer steps.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F

from textcls.config import BYTES_SPEC, RunConfig, TrainConfig, own_vocabulary, wordpiece_size
from textcls.data.tokenize import default_tokenizer_name
from textcls.device import make_accelerator, no_gpu
from textcls.errors import Interrupted, TextclsError
from textcls.io import writing
from textcls.metrics import LOGGED_METRICS, best_metric, is_better, problem_metrics, tune_thresholds
from textcls.train import rundir
from textcls.train.checkpoint import load_training_state, rng_state, save_training_state

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from textcls.model import LoadReport, ModelSource
    from textcls.train.data import PreparedData

log = logging.getLogger("textcls")

DEFAULT_WARMUP_RATIO = 0.06


# ------------------------------------------------------------------------------------------------- settings

def warmup_steps(tc: TrainConfig, total_steps: int) -> int:
    """--warmup-steps as given (the practice's num_warmup_steps), else --warmup-ratio (default 0.06) of all steps."""
    if tc.warmup_steps is not None:
        return tc.warmup_steps
    ratio = DEFAULT_WARMUP_RATIO if tc.warmup_ratio is None else tc.warmup_ratio
    return math.ceil(ratio * total_steps)


def compile_layers(model: torch.nn.Module) -> None:
    """torch.compile each encoder layer in place. Layers, not the whole model: the encoder's per-batch checks
    (padding present? a length the attention takes?) read tensor values, which would break a whole-model graph at
    every batch; a layer is the unit that repeats, so the compiled code is shared by all layers of a kind. In place
    (`Module.compile`), so parameter names, checkpoints and exports do not change."""
    for block in model.encoder.blocks:
        block.compile(dynamic=True)


def adamw(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: biases and LayerNorm weights (the 1-D parameters) are not decayed.
    torch's fused kernel where it has one for the parameters' device (CPU, CUDA): the same update in one pass over
    all parameters; torch's default on a CPU is a Python loop of several ops per tensor, 5-8x slower on bert-tiny
    (about a tenth of the main job's bf16 step, in an ad-hoc timing of optimizer.step alone)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": tc.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
    return torch.optim.AdamW(groups, lr=tc.learning_rate, betas=(tc.adam_beta1, tc.adam_beta2), eps=tc.adam_epsilon,
                             fused=fused or None)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch (the same seed on every process: the same initial weights everywhere); in
    deterministic mode also only deterministic kernels (slower on a GPU)."""
    from accelerate.utils import set_seed
    from transformers import enable_full_determinism

    if deterministic:
        enable_full_determinism(seed)
    else:
        set_seed(seed)
        torch.use_deterministic_algorithms(False)  # an earlier deterministic run in this process may have set it


# ------------------------------------------------------------------------------------------------- the recipe

@dataclass
class TrainState:
    """Where the loop is and what it has counted; saved in every checkpoint (trainer_state.json)."""
    step: int = 0  # optimizer steps taken
    epoch: int = 0  # the current epoch, from 0
    batch_in_epoch: int = 0  # batches of the current epoch consumed
    best_metric: Optional[float] = None
    best_step: Optional[int] = None
    evals_without_improvement: int = 0
    train_seconds: float = 0.0  # time in the training loop, without evaluation and checkpointing
    examples: int = 0
    num_processes: int = 1
    # The logging window since the last `train` record, so that a resumed run logs the same means.
    window_loss: float = 0.0  # sum of the batch losses (mean over processes)
    window_batches: int = 0
    window_examples: int = 0
    window_seconds: float = 0.0


class Trainer:
    """Fine-tunes a classifier as `cfg` says, keeping everything in `run_dir`.

    setup() builds everything below, in this order, and creates (or reopens) the run directory; train() runs the
    loop and calls finish(). A recipe for another model (pretrain.py) overrides the methods of "the model"."""

    command = "train"  # the command that runs this recipe (saved in RUN/run.json: a resume must use the same)
    logged_metrics = ("loss", "accuracy", "macro_f1")  # what metrics.jsonl and the summary keep of an evaluation

    # Made by setup(), in this order:
    model_source: "ModelSource"  # where the model's architecture and weights come from (checked first)
    accelerator: "Accelerator"
    data: "PreparedData"  # tokenized splits, tokenizer, label names
    load_report: "LoadReport"  # what loading the initial weights did
    model: torch.nn.Module  # prepared by accelerate (DDP-wrapped under several processes)
    train_loader: "DataLoader"
    train_sampler: object  # the loader's batch sampler: set_epoch goes here (see _epoch_batches)
    eval_loaders: dict[str, "DataLoader"]  # by split: validation during training, --eval-splits at the end
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR  # stepped once per optimizer step
    total_steps: int
    state: TrainState  # saved in every checkpoint
    metrics_log: rundir.MetricsLog
    # Made by train():
    bar: "tqdm"
    window_loss: torch.Tensor  # (,) on the device: the batch losses since the last log, summed without host syncs
    lr: float  # the learning rate of the last optimizer step
    clock: float  # when the current stretch of training (without evaluation and checkpointing) began

    def __init__(self, cfg: RunConfig, run_dir: Path, resume: bool = False):
        self.cfg, self.tc, self.run_dir, self.resume = cfg, cfg.train, Path(run_dir), resume

    # ------------------------------------------------------------------------------------------------- the model
    def prepare_data(self) -> "PreparedData":
        from textcls.train.data import prepare_training_data
        return prepare_training_data(self.cfg)

    def build_model(self) -> tuple[torch.nn.Module, "LoadReport"]:
        from textcls.model import build_classifier
        return build_classifier(self.cfg.model, self.data.label_names, max_length=self.cfg.tokenize.max_length,
                                source=self.model_source, attention=self.cfg.attention,
                                problem_type=self.data.problem_type)

    def check_model(self) -> None:
        """Fail at once on the model's files and on lengths it cannot take, before the data is read and tokenized
        (minutes on a large dataset); build_model then uses what was found."""
        from textcls.model import encoder_config, find_model

        mc = self.cfg.model
        tokenizer = default_tokenizer_name(self.cfg.tokenize, mc)
        if wordpiece_size(tokenizer) is not None and mc.init == "pretrained":
            raise TextclsError(f"--tokenizer {tokenizer} learns a new vocabulary, which pretrained weights do not "
                               f"know (their embeddings belong to their own); add --init random, or leave out "
                               f"--tokenizer")
        self.model_source = find_model(mc.model, mc.init)
        if tokenizer == BYTES_SPEC and mc.init == "pretrained":
            self._check_bytes_on_pretrained()
        encoder_config(mc, self.model_source, self.cfg.tokenize.max_length, self.cfg.attention)

    def _check_bytes_on_pretrained(self) -> None:
        """--tokenizer bytes with pretrained weights: byte ids 0 to 260 index the first rows of the checkpoint's
        word embedding as they are, so it needs that many rows; what those rows meant is lost (warned), unless the
        model was trained on bytes already (textcls pretrain --tokenizer bytes)."""
        from textcls.data.tokenize import BYTE_VOCAB_SIZE, holds_byte_tokenizer

        rows, name = self.model_source.config.vocab_size, self.cfg.model.model
        if rows < BYTE_VOCAB_SIZE:
            raise TextclsError(f"--tokenizer bytes needs {BYTE_VOCAB_SIZE} rows of word embedding (5 special tokens "
                               f"and 256 bytes), and the pretrained model {name!r} has {rows}; add --init random to "
                               f"train one sized to the bytes, or leave out --tokenizer")
        if holds_byte_tokenizer(self.model_source.folder):
            return
        log.warning("--tokenizer bytes with --init pretrained: byte ids 0-%d reuse rows 0-%d of the word embedding of "
                    "%r, which were trained for other tokens; only the layers above them carry over what was "
                    "pretrained (--init random trains an embedding of the bytes alone)", BYTE_VOCAB_SIZE - 1,
                    BYTE_VOCAB_SIZE - 1, name)

    def make_eval_loaders(self, batch_size: int, collator) -> dict:
        """Loaders of the labelled splits that are evaluated: validation (during training) and --eval-splits."""
        tc, labelled = self.tc, self.data.labelled_splits()
        if tc.eval_strategy != "no" and "validation" not in labelled:
            raise TextclsError(f"{self.cfg.data.data!r} has no labelled validation split to evaluate on; set "
                               f"--validation-fraction above 0 to carve one from train, or --eval-strategy no")
        missing = [s for s in tc.eval_splits if s not in labelled]
        if missing:
            log.warning("--eval-splits: %s not among the labelled splits (%s); not evaluated", ", ".join(missing),
                        ", ".join(labelled))
        wanted = [s for s in labelled if s in tc.eval_splits or (s == "validation" and tc.eval_strategy != "no")]
        return {s: self.accelerator.prepare(self.data.eval_loader(s, batch_size, collator)) for s in wanted}

    def evaluate(self, split: str) -> dict:
        """Metrics of the current model on a labelled split; every process gets the same numbers."""
        return evaluate_loader(self.accelerator, self.model, self.eval_loaders[split], self.data.label_names,
                               self.problem_type, self.thresholds)

    def export(self, model: torch.nn.Module, folder: Path) -> None:
        from textcls.model import save_classifier
        save_classifier(model, folder, tokenizer=self.data.tokenizer, label_names=self.data.label_names,
                        tokenize_cfg=self.cfg.tokenize, thresholds=self.thresholds)

    def check_problem(self) -> None:
        """What the data's problem type (single-label, multi-label, regression) changes: the metrics logged, the one
        that picks the best checkpoint, and the settings that only a single-label classifier has."""
        problem = self.problem_type = getattr(self.data, "problem_type", "single-label")
        self.metric_for_best = best_metric(self.tc.metric_for_best, problem)
        self.thresholds = None if self.tc.threshold is None else [self.tc.threshold] * len(self.data.label_names)
        if self.tc.threshold is not None and problem != "multi-label":
            raise TextclsError(f"--threshold is the decision threshold of a multi-label model; this data is {problem}"
                               f"{' (each row has one label)' if problem == 'single-label' else ' (a score has none)'}")
        if problem == "single-label":
            return
        self.logged_metrics = LOGGED_METRICS[problem]
        if self.metric_for_best != self.tc.metric_for_best:
            log.info("%s: the best checkpoint is the one of the best validation %s", problem, self.metric_for_best)
        if self.tc.class_weights is not None:
            raise TextclsError(f"--class-weights works with single-label classification only; this data is {problem}")
        if self.tc.baseline not in (None, "tfidf-lr"):
            raise TextclsError(f"--baseline {self.tc.baseline} is single-label only; the baseline of {problem} data "
                               f"is tfidf-lr")

    def tune_thresholds(self) -> None:
        """Multi-label without --threshold: each label's threshold that maximises its F1 on validation (0.5 without
        a validation split), for the final evaluation and the exported model."""
        if self.problem_type != "multi-label" or self.tc.threshold is not None:
            return
        if "validation" not in self.eval_loaders:
            self.thresholds = [0.5] * len(self.data.label_names)
            log.info("no validation split: every label's decision threshold is 0.5 (--threshold sets another)")
            return
        logits, labels = loader_logits(self.accelerator, self.model, self.eval_loaders["validation"])
        self.thresholds = tune_thresholds(logits, labels)
        log.info("decision thresholds tuned on validation (each label's best F1): %s",
                 ", ".join(f"{n} {t:.3f}" for n, t in zip(self.data.label_names, self.thresholds)))

    def baseline(self, results: dict[str, dict]) -> dict:
        """The classical baseline (--baseline) fit on the same training rows and measured on the splits of
        `results` (the model's final metrics by split)."""
        from textcls.baseline import run_baseline
        from textcls.config import BaselineConfig

        result = run_baseline(self.cfg.data, BaselineConfig(method=self.tc.baseline), list(results))
        key = self.logged_metrics[1]  # accuracy; multi-label micro_f1; regression pearson
        for split, m in result["metrics"].items():
            log.info("%s %s of the %s baseline: %.4f (the model: %.4f)", split, key, result["method"], m[key],
                     results[split][key])
        return result

    # ------------------------------------------------------------------------------------------------- setup
    def setup(self) -> None:
        """Build data, model, optimizer and schedule; then create (or reopen) the run directory. Everything that can
        fail on bad input fails before a new run directory exists."""
        from transformers import get_linear_schedule_with_warmup

        tc = self.tc
        self.check_model()
        acc = self.accelerator = make_accelerator(tc, self.run_dir)
        with acc.main_process_first():  # the main process tokenizes; the others then find the cache
            self.data = self.prepare_data()
        if own_vocabulary(default_tokenizer_name(self.cfg.tokenize, self.cfg.model)) and \
                self.cfg.model.init == "random":
            # A vocabulary of textcls's own (wordpiece:N: random weights only, check_model made sure; bytes) on
            # random weights: an embedding row per token of it.
            tok, arch = self.data.tokenizer, self.model_source.config
            pad = arch.pad_token_id if tok.pad_token_id is None else tok.pad_token_id
            self.model_source = self.model_source.with_vocabulary(len(tok), pad)
        self.check_problem()
        self.class_weights = self._class_weights()
        seed_everything(tc.seed, tc.deterministic)  # here: the initial weights do not depend on the cache's state
        model, self.load_report = self.build_model()
        if tc.compile:
            compile_layers(model)

        P = acc.num_processes
        collator = self.data.collator(model)  # padded as the model's attention mechanism needs
        train_loader = self.data.train_loader(tc.batch_size * P, tc.seed, tc.group_by_length, collator)
        if len(train_loader) == 0:
            raise TextclsError(f"the training split of {self.cfg.data.data!r} is empty")
        self.train_sampler = train_loader.batch_sampler
        self.eval_loaders = self.make_eval_loaders((tc.eval_batch_size or 2 * tc.batch_size) * P, collator)
        self.optimizer = adamw(model, tc)
        self.model, self.optimizer, self.train_loader = acc.prepare(model, self.optimizer, train_loader)

        # The scheduler is stepped by hand once per optimizer step: accelerate's wrapper would step it once per
        # process, which changes the schedule with the process count.
        steps_per_epoch = math.ceil(len(self.train_loader) / tc.gradient_accumulation_steps)
        self.total_steps = tc.max_steps or tc.epochs * steps_per_epoch
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, warmup_steps(tc, self.total_steps),
                                                         self.total_steps)
        self.state = TrainState(num_processes=P)
        self.metrics_log = rundir.MetricsLog(self.run_dir / rundir.METRICS)
        acc.wait_for_everyone()  # every process has checked the run dir (train()) before it is written
        if self.resume:
            self._load_last_checkpoint()
        elif acc.is_main_process:
            with writing(self.run_dir, "no run was started"):
                self.run_dir.mkdir(parents=True, exist_ok=True)
                rundir.write_run_info(self.run_dir, self.command)
                self.cfg.save(self.run_dir / rundir.CONFIG)
                self.metrics_log.path.touch()
        acc.wait_for_everyone()
        if tc.tensorboard:
            acc.init_trackers("tensorboard")

    def _load_last_checkpoint(self) -> None:
        acc, st = self.accelerator, self.state
        found = rundir.checkpoints(self.run_dir)
        if found:
            step, folder = found[-1]
            saved = load_training_state(folder, acc.unwrap_model(self.model), self.optimizer, rank=acc.process_index)
            if saved["num_processes"] != st.num_processes:
                raise TextclsError(f"{self.run_dir} was trained on {saved['num_processes']} processes; resume it on "
                                   f"as many (--batch-size is per process, so the batches would change)")
            self.scheduler.load_state_dict(saved.pop("scheduler"))
            self.state = TrainState(**saved)
            log.info("resume: continuing from %s (step %d; epoch %d, batch %d)", folder, step, self.state.epoch + 1,
                     self.state.batch_in_epoch)
        else:
            log.info("resume: %s has no checkpoint yet; starting from the beginning", self.run_dir)
        if acc.is_main_process:
            self.metrics_log.truncate_after(self.state.step)
            rundir.remove_partial_checkpoints(self.run_dir)

    # ------------------------------------------------------------------------------------------------- train
    def train(self) -> dict:
        """Run the training loop to the end (or early stop) and return the summary."""
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        acc, st = self.accelerator, self.state
        self.bar = tqdm(total=self.total_steps, initial=st.step, desc="training", unit="step", dynamic_ncols=True,
                        disable=not acc.is_local_main_process or not log.isEnabledFor(logging.INFO))
        self.window_loss = torch.tensor(st.window_loss, dtype=torch.float32, device=acc.device)
        done = st.step >= self.total_steps
        try:
            with logging_redirect_tqdm():  # log lines go above the bar, not onto its line
                while not done:
                    self.model.train()
                    self.clock = time.perf_counter()
                    for batch in self._epoch_batches():
                        grad_norm = self.train_batch(batch)
                        if grad_norm is not None:  # an optimizer step was taken
                            done = self.after_optimizer_step(grad_norm)
                            if done:
                                break
        except KeyboardInterrupt:
            raise self._interrupted() from None
        finally:
            self.bar.close()  # ends the bar's line: a message after it starts a line of its own
        return self.finish()

    def _interrupted(self) -> Interrupted:
        last = rundir.checkpoints(self.run_dir)
        saved = (f"the last checkpoint is step {last[-1][0]}; continue from there with `textcls {self.command} "
                 f"--resume {self.run_dir}`") if last else \
            "no checkpoint was saved yet (start again; --save-steps N saves every N steps)"
        return Interrupted(f"interrupted at step {self.state.step} of {self.total_steps}; {saved}")

    def _class_weights(self) -> Optional[list[float]]:
        """--class-weights resolved against the training split, logged (the config keeps the spec; the summary the
        values)."""
        if self.tc.class_weights is None:
            return None
        weights = self.data.class_weights(self.tc.class_weights)
        log.info("class weights (--class-weights %s): %s", self.tc.class_weights,
                 ", ".join(f"{n} {w:.3g}" for n, w in zip(self.data.label_names, weights)))
        return weights

    def loss(self, batch: dict) -> torch.Tensor:
        """The training objective on one batch: the model's own loss, or with --class-weights the cross-entropy
        with each class weighted (a mean over the batch's weights, as torch's weighted cross_entropy)."""
        if self.class_weights is None:
            return self.model(**batch).loss
        labels = batch.pop("labels")  # (B,)
        logits = self.model(**batch).logits.float()  # (B, C)
        return F.cross_entropy(logits, labels, weight=logits.new_tensor(self.class_weights))

    def train_batch(self, batch: dict) -> Optional[torch.Tensor]:
        """Forward and backward on one batch; at the end of an accumulation, clip and step the optimizer and the
        schedule. Returns the gradient norm when an optimizer step was taken, else None."""
        acc, st = self.accelerator, self.state
        grad_norm = None
        with acc.accumulate(self.model):
            loss = self.loss(batch)
            acc.backward(loss)
            self.window_loss += loss.detach()
            if acc.sync_gradients:
                self._check_finite()  # before the optimizer step: a NaN never reaches the weights
                grad_norm = acc.clip_grad_norm_(self.model.parameters(), self.tc.max_grad_norm or math.inf)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        st.batch_in_epoch += 1
        st.window_batches += 1
        st.window_examples += batch["input_ids"].shape[0] * acc.num_processes
        if not acc.sync_gradients:
            return None
        self.lr = self.scheduler.get_last_lr()[0]  # the rate this step used
        if not acc.optimizer_step_was_skipped:  # fp16 skips steps with overflowed gradients
            self.scheduler.step()
        st.step += 1
        if st.batch_in_epoch == len(self.train_loader):
            st.epoch, st.batch_in_epoch = st.epoch + 1, 0
        return grad_norm

    def after_optimizer_step(self, grad_norm: torch.Tensor) -> bool:
        """What follows each optimizer step, in order: progress, log, evaluate, checkpoint. True when training is
        over (the last step, or early stopping)."""
        st, tc = self.state, self.tc
        self.bar.update(1)
        st.window_seconds += time.perf_counter() - self.clock
        done = st.step >= self.total_steps
        if st.step % tc.logging_steps == 0 or done:
            self._log_train(grad_norm)
        evaluate = self._evaluation_due(done)
        if evaluate:
            done = self._evaluate_and_track() or done
        if evaluate or done or (tc.save_steps and st.step % tc.save_steps == 0):
            self.save_checkpoint()
        self.clock = time.perf_counter()  # evaluating and checkpointing are not training time
        return done

    def _evaluation_due(self, last_step: bool) -> bool:
        tc, st = self.tc, self.state
        end_of_epoch = st.batch_in_epoch == 0  # the step just taken ended an epoch
        return tc.eval_strategy != "no" and (last_step or (tc.eval_strategy == "epoch" and end_of_epoch) or
                                             (tc.eval_strategy == "steps" and st.step % tc.eval_steps == 0))

    def _epoch_batches(self):
        """The training batches of epoch `state.epoch` from batch `state.batch_in_epoch` on (a resumed run starts
        mid-epoch). The order is a function of (seed, epoch). The epoch is set on our sampler itself, because
        accelerate's wrappers (BatchSamplerShard with several processes, SkipBatchSampler when skipping) do not pass
        set_epoch on; and on the loader, whose iteration begins with set_epoch(its own count of iterations)."""
        st = self.state
        self.train_sampler.set_epoch(st.epoch)
        loader = self.accelerator.skip_first_batches(self.train_loader, st.batch_in_epoch) if st.batch_in_epoch \
            else self.train_loader
        loader.set_epoch(st.epoch)
        return loader

    def _check_finite(self) -> None:
        """Stop when a loss since the last log is NaN/inf. The window's sum is summed over processes, so all stop."""
        acc, st = self.accelerator, self.state
        total = acc.reduce(self.window_loss, "sum") if acc.num_processes > 1 else self.window_loss
        if torch.isfinite(total):
            return
        last = rundir.checkpoints(self.run_dir)
        kept = f"the last good checkpoint is {last[-1][1]}" if last else "no checkpoint was written yet"
        raise TextclsError(f"the training loss became {total.item()} at step {st.step + 1} (epoch {st.epoch + 1}); "
                           f"the run stopped before that step changed the weights, and {kept}. Start again with a "
                           f"lower --learning-rate, clipping (--max-grad-norm), or --mixed-precision no")

    def _log_train(self, grad_norm: torch.Tensor) -> None:
        acc, st = self.accelerator, self.state
        mean_loss = acc.reduce(self.window_loss, "mean").item() / st.window_batches
        record = {"kind": "train", "step": st.step, "epoch": self._epochs_done(), "loss": mean_loss, "lr": self.lr,
                  "grad_norm": float(grad_norm), "examples_per_s": st.window_examples / st.window_seconds}
        self._log(record)
        self.bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{self.lr:.2e}", ex_s=f"{record['examples_per_s']:.0f}")
        st.train_seconds += st.window_seconds
        st.examples += st.window_examples
        self.window_loss.zero_()
        st.window_batches = st.window_examples = 0
        st.window_seconds = 0.0

    def _epochs_done(self) -> float:
        return round(self.state.epoch + self.state.batch_in_epoch / len(self.train_loader), 4)

    def _log(self, record: dict) -> None:
        if self.accelerator.is_main_process:
            self.metrics_log.write(record)
            if self.tc.tensorboard:
                self.accelerator.log({f"{record['kind']}/{k}": v for k, v in record.items()
                                      if isinstance(v, (int, float)) and k != "step"}, step=record["step"])

    # ------------------------------------------------------------------------------------------------- evaluate
    def _evaluate_and_track(self) -> bool:
        """Evaluate on validation, track the best; True when early stopping says stop."""
        st, tc = self.state, self.tc
        metrics = self.evaluate("validation")
        self.model.train()
        improved = is_better(self.metric_for_best, metrics[self.metric_for_best], st.best_metric)
        if improved:
            st.best_metric, st.best_step, st.evals_without_improvement = metrics[self.metric_for_best], st.step, 0
        else:
            st.evals_without_improvement += 1
        self._log({"kind": "eval", "split": "validation", "step": st.step, "epoch": self._epochs_done(),
                   **{k: metrics[k] for k in self.logged_metrics}, "best": improved})
        log.info("step %d: validation %s", st.step, ", ".join(f"{k} {metrics[k]:.4f}" for k in self.logged_metrics))
        patience = tc.early_stopping_patience
        if patience is not None and st.evals_without_improvement >= patience:
            log.info("early stopping: no better validation %s in %d evaluations", self.metric_for_best, patience)
            return True
        return False

    # ------------------------------------------------------------------------------------------------- save
    def save_checkpoint(self) -> Path:
        """Write the training state into checkpoints/step-N: a temp folder renamed into place, so a kill or a full
        disk leaves the earlier checkpoints as they were; then the oldest beyond --save-total-limit go (never the
        best)."""
        from accelerate.utils import gather_object

        from textcls.io import atomic_dir

        acc, st = self.accelerator, self.state
        st.window_loss = acc.reduce(self.window_loss, "mean").item()
        rng = gather_object([rng_state()])  # every process's RNG states, in rank order; the main process writes
        final = rundir.checkpoint_dir(self.run_dir, st.step)
        if acc.is_main_process:
            trainer_state = {**dataclasses.asdict(st), "scheduler": self.scheduler.state_dict()}
            try:
                with atomic_dir(final) as tmp:
                    save_training_state(tmp, acc.unwrap_model(self.model), self.optimizer, trainer_state, rng)
            except TextclsError as e:
                raise TextclsError(f"checkpoint at step {st.step}: {e}. The earlier checkpoints are intact: once "
                                   f"there is room, continue the run with --resume {self.run_dir}") from None
            best = rundir.checkpoint_dir(self.run_dir, st.best_step) if st.best_step is not None else None
            rundir.prune_checkpoints(self.run_dir, self.tc.save_total_limit, keep=[final, best])
        acc.wait_for_everyone()
        return final

    def finish(self) -> dict:
        """Load the best weights if asked, export the model, evaluate the final splits, plot, and summarise."""
        from safetensors.torch import load_model

        from textcls.train.plots import plot_run

        acc, tc, st = self.accelerator, self.tc, self.state
        st.train_seconds += st.window_seconds  # the steps since the last log
        st.examples += st.window_examples
        model = acc.unwrap_model(self.model)
        weights = "last"
        if tc.load_best_at_end and st.best_step is not None and st.best_step != st.step:
            load_model(model, str(rundir.checkpoint_dir(self.run_dir, st.best_step) / "model.safetensors"))
            weights = f"best (step {st.best_step})"
        self.tune_thresholds()
        results = {s: self.evaluate(s) for s in tc.eval_splits if s in self.eval_loaders}
        summary = {"run_dir": str(self.run_dir), "steps": st.step, "epochs": self._epochs_done(),
                   "train_seconds": round(st.train_seconds, 2),
                   "train_examples_per_s": round(st.examples / st.train_seconds, 2) if st.train_seconds else None,
                   "best_validation": {self.metric_for_best: st.best_metric, "step": st.best_step},
                   "weights": weights,
                   "initial_weights": self.load_report.to_dict(), "model_dir": str(self.run_dir / rundir.MODEL),
                   "class_weights": self.class_weights and dict(zip(self.data.label_names, self.class_weights)),
                   "final": {s: {k: m[k] for k in self.logged_metrics} for s, m in results.items()},
                   "metrics": results}
        if self.problem_type != "single-label":
            summary["problem_type"] = self.problem_type
        if self.problem_type == "multi-label":
            summary["thresholds"] = dict(zip(self.data.label_names, self.thresholds))
        if acc.is_main_process and tc.baseline and results:
            summary["baseline"] = self.baseline(results)
        if acc.is_main_process:
            self.export(model, self.run_dir / rundir.MODEL)
            for split, m in results.items():
                self._log({"kind": "final", "split": split, "step": st.step,
                           **{k: m[k] for k in self.logged_metrics}})
            plotted = tuple(k for k in self.logged_metrics if k != "loss")  # the loss has a plot of its own
            summary["plots"] = [str(p) for p in plot_run(self.metrics_log.read(), self.run_dir / "plots", plotted)]
            rundir.write_summary(self.run_dir, summary)
        if tc.tensorboard:
            acc.end_training()
        acc.wait_for_everyone()
        return summary


@torch.no_grad()
def evaluate_loader(accelerator, model, loader, label_names: list[str], problem_type: str = "single-label",
                    thresholds: Optional[list[float]] = None) -> dict:
    """Run `model` over `loader` and compute the metrics of `problem_type` on the gathered logits (padding
    duplicates dropped; a multi-label model's at `thresholds`, default 0.5); windows of chunked documents are
    averaged per document first, so that documents are counted, not windows."""
    start = time.perf_counter()
    logits, labels = loader_logits(accelerator, model, loader)
    seconds = time.perf_counter() - start
    metrics = problem_metrics(problem_type, logits, labels, label_names, thresholds)
    metrics["examples_per_s"] = metrics["examples"] / seconds if seconds else None
    return metrics


@torch.no_grad()
def loader_logits(accelerator, model, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of every document of `loader`, gathered from all processes, on the CPU."""
    from textcls.infer.model import document_labels, mean_by_document

    model.eval()
    all_logits, all_labels, all_docs = [], [], []
    for batch in loader:
        labels = batch.pop("labels")
        docs = batch.pop("doc_ids", torch.zeros(len(labels), dtype=torch.long, device=labels.device))  # (B,)
        logits = model(**batch).logits
        logits, labels, docs = accelerator.gather_for_metrics((logits.float(), labels, docs))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
        all_docs.append(docs.cpu())
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    if "doc_id" in loader.dataset.column_names:
        docs = torch.cat(all_docs)
        logits, labels = mean_by_document(logits, docs), torch.from_numpy(document_labels(labels.numpy(), docs.numpy()))
    return logits, labels


def train(cfg: RunConfig, output: Optional[Path] = None, resume: Optional[Path] = None) -> dict:
    """Fine-tune as `cfg` says into a new run directory (`output`, else cfg.train.output, else runs/<time>-<name>);
    with `resume`, continue the run in that directory from its last checkpoint (its config must be `cfg`)."""
    return run_recipe(Trainer, cfg, output, resume)


def run_recipe(recipe: type[Trainer], cfg: RunConfig, output: Optional[Path] = None,
               resume: Optional[Path] = None) -> dict:
    """Run `recipe` (Trainer or a subclass) as `train` describes; returns the summary."""
    if resume is not None:
        run_dir = Path(resume)
        rundir.check_resumable(run_dir, cfg, recipe.command)
    else:
        run_dir = Path(output or cfg.train.output or _same_on_every_process(rundir.default_run_dir(cfg)))
        rundir.check_new_run_dir(run_dir)
    lock = rundir.RunLock(run_dir)
    if _is_main_process():  # the main process speaks for the run: it alone writes the folder
        lock.acquire()
        # Checked again with the lock held: a run that ended between the first check and now is not overwritten.
        rundir.check_resumable(run_dir, cfg, recipe.command) if resume is not None else rundir.check_new_run_dir(run_dir)
    trainer = recipe(cfg, run_dir, resume=resume is not None)
    try:
        trainer.setup()
    except BaseException:
        lock.release(failed_in_setup=resume is None)
        raise
    try:
        return trainer.train()
    finally:
        lock.release()


def _is_main_process() -> bool:
    from accelerate import PartialState
    return PartialState(cpu=no_gpu()).is_main_process


def _same_on_every_process(path: Path) -> Path:
    """The main process's value: a timestamped name may differ by a second between processes."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    if PartialState(cpu=no_gpu()).num_processes == 1:
        return path
    return broadcast_object_list([path])[0]
