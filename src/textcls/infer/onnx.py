"""`textcls export` and ONNX Runtime as predict's other backend (`--backend onnx`).

An ONNX export is a folder that predicts on its own: model.onnx (inputs input_ids, attention_mask, token_type_ids,
(batch, sequence) int64 each, dynamic; output logits (batch, labels)), the tokenizer, config.json, and textcls.json
with the labels, the tokenize settings and the attention it was exported with. `--quantize int8` stores the weights
of its matrix products in int8 (ONNX Runtime's dynamic quantization: activations are quantized per batch).

The graph comes from torch.export (torch.onnx.export with dynamo=True, which needs onnxscript): the TorchScript
exporter (dynamo=False) gave other logits than the model (|Δ| ≈ 3 on bert-tiny dims, torch 2.13). Every export is
checked against the torch model on a test batch before it is written.

Predicting from an export reuses TrainedModel whole (tokenization as in training, length-sorted batches, input order
restored, windows averaged); only `run_batch` differs: an onnxruntime session instead of the torch model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from textcls.config import AttentionOptions, TokenizeConfig, section_from_dict
from textcls.errors import TextclsError
from textcls.infer.model import TrainedModel, load_trained, saved_thresholds

log = logging.getLogger("textcls")

ONNX_FILE = "model.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 18
FORMATS = ("onnx", "transformers")
QUANTIZE = ("int8",)
BACKENDS = ("torch", "onnx")
# ONNX Runtime's logits against torch's on the export's test batch: the same arithmetic in another order.
CHECK_TOLERANCE = 1e-3


def require_onnx(what: str, modules: tuple[str, ...] = ("onnxruntime",)) -> None:
    """The onnx extra's modules, or the one error that says how to install them."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise TextclsError(f"{what} needs the onnx extra: pip install 'textcls[onnx]' ({name} is not "
                               f"installed)") from None


def check_export_output(output: Path) -> None:
    """An export goes to a new or empty folder: it never writes over files of another."""
    if output.is_file():
        raise TextclsError(f"--output {str(output)!r} is a file; give a new or empty folder")
    if output.is_dir() and any(output.iterdir()):
        raise TextclsError(f"--output {str(output)!r} is not empty; give a new or empty folder (remove an earlier "
                           f"export first to replace it)")


def export_model(model_path: str | Path, output: str | Path, format: str = "onnx", quantize: Optional[str] = None,
                 tokenizer: Optional[str] = None, attention: Optional[str] = None,
                 attention_overrides: Optional[dict] = None) -> dict:
    """Write the model at `model_path` (what load_trained takes) to the new folder `output`: as ONNX (`quantize`
    "int8": int8 weights) or as the transformers folder a run keeps in model/. Every check on the arguments comes
    before the model is loaded. Returns what was written."""
    output = Path(output)
    if format not in FORMATS:
        raise TextclsError(f"--format {format!r} is not one of: {', '.join(FORMATS)}")
    if quantize is not None and (quantize not in QUANTIZE or format != "onnx"):
        raise TextclsError(f"--quantize {quantize} is not possible: --quantize int8 goes with --format onnx")
    if format == "onnx":
        require_onnx("export --format onnx", ("onnx", "onnxscript", "onnxruntime"))
    check_export_output(output)
    trained = load_trained(model_path, tokenizer, device=torch.device("cpu"), attention=attention,
                           attention_overrides=attention_overrides, precision="no")
    if format == "transformers":
        from textcls.model import save_classifier
        save_classifier(trained.model, output, trained.tokenizer, trained.label_names, trained.tokenize_cfg,
                        thresholds=trained.thresholds)
    else:
        _write_onnx_folder(trained, output, quantize)
    return {"output": str(output), "format": format, "quantize": quantize, "source": str(trained.folder),
            "labels": trained.label_names, "files": sorted(p.name for p in output.iterdir())}


# --------------------------------------------------------------------------------------------- export

def _write_onnx_folder(trained: TrainedModel, output: Path, quantize: Optional[str]) -> None:
    import shutil

    from textcls.io import atomic_dir
    from textcls.model.hf import TEXTCLS_JSON

    cfg = trained.model.encoder.config
    settings = {"format_version": 1, "attention": cfg.attention,
                "attention_options": dataclasses.asdict(cfg.attention_options),
                "pooling": trained.model.pooling, "label_names": trained.label_names,
                "tokenize": dataclasses.asdict(trained.tokenize_cfg),
                "onnx": {"file": ONNX_FILE, "opset": OPSET, "quantize": quantize,
                         "exported_from": str(trained.folder.resolve())}}
    if trained.problem_type != "single-label":
        settings |= {"problem_type": trained.problem_type,
                     "thresholds": trained.thresholds and dict(zip(trained.label_names, trained.thresholds))}
    with atomic_dir(output) as tmp:
        _export_graph(trained, tmp / ONNX_FILE)
        if quantize == "int8":
            _quantize_int8(tmp / ONNX_FILE)
        trained.tokenizer.save_pretrained(tmp)
        shutil.copy(trained.folder / "config.json", tmp / "config.json")  # the architecture and id2label
        (tmp / TEXTCLS_JSON).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


class _Logits(torch.nn.Module):
    """The classifier as the ONNX graph sees it: three (B, T) int64 tensors in, the logits out."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def _test_batch(trained: TrainedModel) -> dict[str, torch.Tensor]:
    """Two rows of ids, the second one padded: the shapes export traces, and the batch the export is checked on."""
    cfg = trained.model.encoder.config
    multiple = trained.model.encoder.attention.seq_multiple_of
    T = min(-(-16 // multiple) * multiple, cfg.max_positions)
    input_ids = torch.arange(2 * T).view(2, T) % (cfg.vocab_size - 1) + 1  # (2, T)
    attention_mask = torch.ones(2, T, dtype=torch.long)
    attention_mask[1, T // 2:] = 0
    input_ids[1, T // 2:] = cfg.pad_token_id
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "token_type_ids": torch.zeros(2, T, dtype=torch.long)}


@contextlib.contextmanager
def _quiet():
    """torch.export, torch.onnx and onnxruntime's quantizer log, warn and print (to sys.stderr: a failed export's
    whole partial graph) what is not the user's business: a failure becomes textcls's one line instead."""
    disabled = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)


def _export_graph(trained: TrainedModel, path: Path) -> None:
    """model.onnx with dynamic batch and sequence axes, checked against the torch model on a test batch."""
    import numpy as np
    from torch.export import Dim

    batch = _test_batch(trained)
    module = _Logits(trained.model).eval()
    sequence = Dim("sequence", max=trained.model.encoder.config.max_positions)
    dims = {name: {0: Dim("batch"), 1: sequence} for name in INPUTS}
    try:
        with _quiet(), torch.no_grad():
            torch.onnx.export(module, tuple(batch[k] for k in INPUTS), str(path), input_names=list(INPUTS),
                              output_names=["logits"], dynamic_shapes=dims, opset_version=OPSET, dynamo=True,
                              external_data=False, verbose=False)
    except TextclsError:
        raise
    except Exception as e:
        raise _export_error(e) from None
    with torch.no_grad():
        expected = module(**batch).numpy()  # (2, C)
    got = _session(path, "the exported graph").run(["logits"], {k: v.numpy() for k, v in batch.items()})[0]
    worst = float(np.abs(got - expected).max())
    if not np.allclose(got, expected, rtol=CHECK_TOLERANCE, atol=CHECK_TOLERANCE):
        raise TextclsError(f"the exported ONNX graph computes other logits than the model (up to {worst:.2g} apart "
                           f"on a test batch): an exporter fault; predict with --backend torch")


def _first_line(e: BaseException) -> str:
    return " ".join(next((s for s in str(e).splitlines() if s.strip()), type(e).__name__).split())


def _export_error(e: BaseException) -> TextclsError:
    """One line that names the part of the model whose code the exporter could not follow, and why: the innermost
    textcls frame of the exception and its causes (an attention mechanism's file names the mechanism)."""
    import textcls.model

    causes = []
    while e is not None and e not in causes:
        causes.append(e)
        e = e.__cause__ or e.__context__
    model_dir = Path(textcls.model.__file__).resolve().parent
    frames = [(c, f) for c in causes for f in traceback.extract_tb(c.__traceback__)
              if Path(f.filename).resolve().is_relative_to(model_dir)]
    if not frames:
        return TextclsError(f"the model cannot be exported to ONNX: {_first_line(causes[-1])}; predict with "
                            f"--backend torch")
    cause, where = frames[-1]
    file = Path(where.filename).resolve()
    reason = f"{_first_line(cause)} ({file.name} line {where.lineno}: {where.line})"
    if file.parent.name == "attention" and file.stem not in ("__init__", "full"):
        return TextclsError(f"attention {file.stem!r} cannot be exported to ONNX: {reason}; predict with --backend "
                            f"torch, or export it with --attention full (the same weights, full attention)")
    return TextclsError(f"the model's {where.name} cannot be exported to ONNX: {reason}; predict with --backend "
                        f"torch")


def _quantize_int8(path: Path) -> None:
    """Replace the fp32 graph at `path` by one with int8 weights (dynamic quantization of the matrix products)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_name("fp32.onnx")
    path.rename(fp32)
    try:
        with _quiet():
            # Per-channel scales: one outlier column no longer coarsens a whole matrix (on a pretrained MiniLM,
            # label agreement with fp32 went from 93% to 97%).
            quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=True)
    except Exception as e:
        raise TextclsError(f"int8 quantization (onnxruntime.quantization.quantize_dynamic) failed: "
                           f"{_first_line(e)}") from None
    finally:
        fp32.unlink()
    _session(path, "the int8 graph")  # it must load where it will run


# --------------------------------------------------------------------------------------------- the backend

def _session(path: Path, what: str):
    """An onnxruntime CPU session with torch's thread count (the torch backend's, so that the two compare)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only: its warnings would interleave with predict's output
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise TextclsError(f"ONNX Runtime cannot load {what} {str(path)!r}: {_first_line(e)}") from None


@dataclass
class OnnxModel(TrainedModel):
    """A TrainedModel whose batches ONNX Runtime runs: the same tokenization, batches and order as the torch
    backend's. `model` is None: an export holds no torch weights."""
    session: Any = None
    attention: Optional[AttentionOptions] = None

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def collator(self):
        from textcls.data.batching import Collator
        from textcls.model.attention import attention_class

        return Collator.for_attention(self.tokenize_cfg, self.tokenizer, attention_class(self.attention.mechanism)[0])

    def check_data(self, pairs: bool) -> None:
        from textcls.model.attention import attention_class
        attention_class(self.attention.mechanism)[0].check_data(self.attention, pairs)

    def run_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feeds = {i.name: batch[i.name].numpy() for i in self.session.get_inputs()}  # (b, T) int64 each
        return torch.from_numpy(self.session.run(["logits"], feeds)[0]).float()  # (b, num_labels)


def load_onnx(path: str | Path, tokenizer: Optional[str] = None) -> OnnxModel:
    """An ONNX export folder (`textcls export MODEL --format onnx`) ready for predict, with its own tokenizer unless
    `tokenizer` names another."""
    from textcls.data.tokenize import load_tokenizer
    from textcls.model.attention import attention_options
    from textcls.model.hf import TEXTCLS_JSON, read_json

    require_onnx("--backend onnx")
    folder = Path(path)
    if not folder.is_dir():
        raise TextclsError(f"model {str(folder)!r} is not a folder; --backend onnx runs an ONNX export: make one "
                           f"with `textcls export MODEL --format onnx --output DIR` and predict from DIR")
    if not (folder / ONNX_FILE).is_file():
        raise TextclsError(f"{str(folder)!r} holds no {ONNX_FILE}: --backend onnx runs an ONNX export; make one "
                           f"with `textcls export {folder} --format onnx --output DIR` and predict from DIR")
    saved = read_json(folder / TEXTCLS_JSON) if (folder / TEXTCLS_JSON).is_file() else {}
    if "onnx" not in saved:
        raise TextclsError(f"{str(folder)!r} holds a {ONNX_FILE} but no textcls.json of an export (its labels and "
                           f"tokenize settings); make it with `textcls export MODEL --format onnx --output DIR`")
    tokenize_cfg = section_from_dict(TokenizeConfig, saved["tokenize"])
    tokenize_cfg.cache_dir, tokenize_cfg.num_proc = None, 1  # as load_trained: this machine's default cache
    options = attention_options(saved["attention"], saved.get("attention_options"))
    log.debug("ONNX Runtime: %s (%s weights)", folder / ONNX_FILE, saved["onnx"].get("quantize") or "fp32")
    problem = saved.get("problem_type", "single-label")
    return OnnxModel(None, load_tokenizer(tokenizer or str(folder)), list(saved["label_names"]), tokenize_cfg,
                     folder, session=_session(folder / ONNX_FILE, "the ONNX model"), attention=options,
                     problem_type=problem, thresholds=saved_thresholds(saved, list(saved["label_names"]), problem))
