"""Contrastive fine-tuning: the train stage (``stages/train.py``) as a library.

``config`` (the ``train`` parameters), ``loss`` (sentence-transformers losses as configured), ``trainer`` (one
run), ``soup`` (several runs averaged), ``live`` (curves through dvclive), ``card`` (the model card).
"""
