"""Serving: index versions in PostgreSQL + pgvector (the reindex stage), search, and the HTTP service.

``db`` (connection and schema migration, ``schema.sql``), ``versions`` (load, promote, roll back, prune),
``promotion`` (the gate), ``search`` (dense and hybrid), ``check`` (the served index measured), ``service`` and
``app`` (the search service and its HTTP layer, ``static/``), ``abtest`` and ``ablog`` (A/B statistics and
logs), ``simulate`` (simulated users).
"""
