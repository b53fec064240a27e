"""Data in: BEIR files and the other sources teams have, validated, normalised, deduplicated and split.

``beir`` (the exchange format), ``sources`` (pairs, clicks), ``prepare`` and ``dedup`` (the prepare stage),
``split`` (the split stage), ``synthetic`` and ``llm`` (the synthesize stage).
"""
