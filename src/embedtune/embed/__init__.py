"""Embedding a corpus: the embed stages (``stages/embed.py``) as a library.

``encoder`` (texts to unit vectors, in several processes), ``precision`` (fp32 or bf16, measured),
``views`` (tail views of long documents), ``window`` (what a token window reads of a text), ``store`` (the stage
output), ``onnx`` (an int8 export for serving).
"""
