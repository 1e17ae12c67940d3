"""Using a trained classifier: load it as it was trained, run it on tokenized rows or texts, evaluate, predict."""

from textcls.infer.evaluate import evaluate_model, model_label_ids
from textcls.infer.model import (
           TrainedModel,
           load_trained,
           mean_by_document,
           model_folder,
)
from textcls.infer.onnx import export_model, load_onnx
from textcls.infer.predict import (
           load_backend,
           predict_files,
           predict_probabilities,
           predict_texts,
           prediction_rows,
)

__all__ = ["evaluate_model", "model_label_ids", "TrainedModel", "load_trained", "mean_by_document", "model_folder",
           "export_model", "load_onnx", "load_backend", "predict_files", "predict_probabilities", "predict_texts",
           "prediction_rows"]
