"""embedtune: fine-tune an embedding model on your own domain, reproducibly (``dvc repro``)."""

import os as _os

# Models and data come from disk only; never let a library reach for a model hub.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"
