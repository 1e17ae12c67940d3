"""textcls: fine-tune compact transformer encoders for text classification, with efficient attention."""

__version__ = "0.1.0"

from textcls.errors import TextclsError  # noqa: E402

__all__ = ["TextclsError", "__version__"]
