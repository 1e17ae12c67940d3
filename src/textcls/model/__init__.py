"""textcls's BERT encoder with pluggable attention, its heads, and loading/saving transformers-layout checkpoints."""

from textcls.model.attention import (
                                     Attention,
                                     AttentionInputs,
                                     AttentionShape,
                                     attention_class,
                                     attention_names,
                                     attention_options,
                                     build_attention,
                                     describe_attention,
                                     register_attention,
)
from textcls.model.build import (
                                     ModelSource,
                                     build_classifier,
                                     build_masked_lm,
                                     describe_model,
                                     encoder_config,
                                     find_model,
                                     load_classifier,
)
from textcls.model.encoder import (
                                     BertClassifier,
                                     BertMaskedLM,
                                     Encoder,
                                     EncoderConfig,
                                     ModelOutput,
)
from textcls.model.hf import (
                                     LoadReport,
                                     hf_state_dict,
                                     load_hf_state,
                                     read_state_dict,
                                     save_classifier,
                                     save_masked_lm,
)
from textcls.model.presets import PRESETS, Preset

__all__ = [
    "Attention", "AttentionInputs", "AttentionShape", "attention_class", "attention_names", "attention_options",
    "build_attention", "describe_attention", "register_attention",
    "ModelSource", "build_classifier", "build_masked_lm", "describe_model", "encoder_config", "find_model",
    "load_classifier",
    "BertClassifier", "BertMaskedLM", "Encoder", "EncoderConfig", "ModelOutput",
    "LoadReport", "hf_state_dict", "load_hf_state", "read_state_dict", "save_classifier", "save_masked_lm",
    "PRESETS", "Preset",
]
