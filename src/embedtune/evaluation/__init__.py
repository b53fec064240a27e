"""Evaluation: exact retrieval (``retrieval``), BEIR metrics and comparisons (``metrics``), reports and plots
(``reports``), shared by the baseline, evaluate, evaluate_dev and hybrid stages.
"""
