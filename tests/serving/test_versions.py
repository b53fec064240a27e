"""pgvector index versions against a real PostgreSQL (the embedded server, started by the fixture)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from embedtune.serving.db import IndexError_, connect
from embedtune.serving.promotion import decide
from embedtune.serving.search import FingerprintMismatch, LexicalIndex, hybrid_search, search
from embedtune.serving.versions import (
    SERVING_VIEW,
    LoadResult,
    get_version,
    list_versions,
    load_version,
    promote,
    prune,
    query_precision,
    rollback,
    serving_version,
)
from tests.conftest import REPO

DIM = 16


def _vectors(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _load(conn, fingerprint: str, prefix: str, n: int = 200, seed: int = 0, dim: int = DIM) -> LoadResult:
    return load_version(conn, fingerprint=fingerprint, model_path=f"/models/{prefix}",
                              ids=[f"{prefix}{i}" for i in range(n)], vectors=_vectors(n, seed, dim),
                              titles=[f"title {i}" for i in range(n)], texts=["body"] * n)


FP_A, FP_B, FP_C, FP_D, FP_E, FP_F = "a" * 64, "b" * 64, "c" * 64, "d" * 64, "e" * 64, "f" * 64


def test_the_schema_is_applied_once_and_readers_need_it(empty_db_url: str) -> None:
    from embedtune.serving.db import SCHEMA_VERSION, migrate, schema_version

    with pytest.raises(IndexError_, match="holds no embedtune index yet: run `dvc repro`"), connect(empty_db_url):
        pass
    with connect(empty_db_url, migrate_schema=True) as conn:
        assert schema_version(conn) == SCHEMA_VERSION
        assert migrate(conn) == 0  # already there: nothing runs again
        assert conn.execute("SELECT count(*) FROM embedtune_schema").fetchone()[0] == SCHEMA_VERSION  # one row each
    with connect(empty_db_url) as conn:  # a reader now finds the schema
        assert serving_version(conn) is None


def test_a_pre_release_database_is_refused_with_what_to_do(empty_db_url: str) -> None:
    import psycopg

    with psycopg.connect(empty_db_url, autocommit=True) as conn:  # tables as code before versioned schemas made them
        conn.execute("CREATE TABLE embedtune_versions (version text PRIMARY KEY)")
    for migrating in (True, False):
        with pytest.raises(IndexError_, match=r"pre-release schema, not migrated\): use a fresh database"), \
                connect(empty_db_url, migrate_schema=migrating):
            pass


def test_a_database_newer_than_the_code_is_refused(db_url: str) -> None:
    from embedtune.serving.db import SCHEMA_VERSION, migrate

    with connect(db_url) as conn:
        conn.execute("INSERT INTO embedtune_schema (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
        with pytest.raises(IndexError_, match="newer than this code's"):
            migrate(conn)
    refused = f"at version {SCHEMA_VERSION + 1}, this code needs {SCHEMA_VERSION}"
    with pytest.raises(IndexError_, match=refused), connect(db_url):
        pass


def test_load_search_and_noop_reload(db_url: str) -> None:
    with connect(db_url) as conn:
        first = _load(conn, FP_A, "a")
        assert first.created and first.rows == 200 and re.fullmatch(r"emb_[0-9a-f]{16}", first.version)
        again = _load(conn, FP_A, "a")
        assert not again.created and again.rows == 200
        promote(conn, first.version, "test")
        vectors = _vectors(200, 0)
        used, hits = search(conn, vectors[7], model_fingerprint=FP_A, k=5, ef_search=100)
        assert used == first.version and hits[0].id == "a7" and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert len(hits) == 5 and hits[0].title == "title 7"
        assert conn.execute(f"SELECT count(*) FROM {SERVING_VIEW}").fetchone()[0] == 200


def test_a_chunk_keeps_its_source_file_and_page_and_searches_show_them(db_url: str) -> None:
    """A documents folder's chunks carry ``metadata: {source, page}`` (corpus.jsonl); the version stores them and
    every hit, dense or hybrid, says which file and page it is from. A document without them has none."""
    ids = ["handbook/leave.pdf#p3-1", "wiki/setup.html#s2-1", "plain", "by-hand"]
    # corpus.jsonl's documents without metadata have None; one written by hand may hold other types
    metadata = [{"source": "handbook/leave.pdf", "page": 3}, {"source": "wiki/setup.html", "page": None}, None,
                {"source": 7, "page": "iv"}]
    vectors = _vectors(4, 4)
    with connect(db_url) as conn:
        loaded = load_version(conn, fingerprint=FP_A, model_path="/m", ids=ids, vectors=vectors,
                              titles=["Leave", "Setup", "", ""], texts=["annual leave days", "install it", "x", "y"],
                              metadata=metadata)
        hits = {h.id: h for h in search(conn, vectors[0], model_fingerprint=FP_A, k=4, version=loaded.version)[1]}
        assert (hits[ids[0]].source, hits[ids[0]].page) == ("handbook/leave.pdf", 3)
        assert hits[ids[0]].provenance == "handbook/leave.pdf, page 3"
        assert hits[ids[1]].provenance == "wiki/setup.html" and hits["plain"].provenance == ""
        assert (hits["by-hand"].source, hits["by-hand"].page) == (None, None)
        _, fused = hybrid_search(conn, vectors[0], "annual leave", LexicalIndex(conn, loaded.version),
                                 model_fingerprint=FP_A, lexical_weight=0.5, k=1, version=loaded.version)
        assert fused[0].provenance == "handbook/leave.pdf, page 3"
        with pytest.raises(IndexError_, match="4 ids but 2 metadata records"):
            load_version(conn, fingerprint=FP_B, model_path="/m", ids=ids, vectors=vectors, titles=[""] * 4,
                         texts=["a", "b", "c", "d"], metadata=metadata[:2])


def test_the_migration_to_schema_4_gives_older_versions_empty_provenance(db_url: str) -> None:
    """A version loaded under schema 3 has no source/page columns; migrating adds them (NULL) and it still
    serves."""
    with connect(db_url) as conn:
        old = _load(conn, FP_A, "a", n=20)
        promote(conn, old.version, "test")
        conn.execute(f"ALTER TABLE {old.version}_docs DROP COLUMN source, DROP COLUMN page")  # as schema 3 made it
        conn.execute("DELETE FROM embedtune_schema WHERE version = 4")
    with connect(db_url, migrate_schema=True) as conn:
        _, hits = search(conn, _vectors(20, 0)[5], model_fingerprint=FP_A, k=2)
        assert hits[0].id == "a5" and hits[0].source is None and hits[0].provenance == ""


def test_searches_and_read_commands_never_wait_on_a_reindex_transaction(db_url: str, monkeypatch) -> None:
    """While a reindex holds its transaction open (a new version's tables created, its row inserted, not yet
    committed), searches, `embedtune versions` and a new connection all answer at once: readers take no DDL lock
    (every connection used to run ALTER TABLE and queued behind such a transaction). A 2 s lock_timeout on the
    readers turns any wait into a failure instead of a hang."""
    import psycopg
    from psycopg.conninfo import make_conninfo
    from typer.testing import CliRunner

    from embedtune.cli import app

    with connect(db_url) as conn:
        serving = _load(conn, FP_A, "a").version
        promote(conn, serving, "test")
    impatient = make_conninfo(db_url, options="-c lock_timeout=2000")
    with psycopg.connect(db_url) as writer:  # not autocommit: everything below stays in one open transaction
        writer.execute("CREATE TABLE emb_00000000pending (id text, embedding vector(16))")
        writer.execute("INSERT INTO embedtune_versions (version, fingerprint, model_path, dim, rows) "
                       "VALUES ('emb_00000000pending', %s, '/m', 16, 0)", ("b" * 64,))
        writer.execute("INSERT INTO embedtune_events (event, version) VALUES ('loading', 'emb_00000000pending')")
        started = time.perf_counter()
        with connect(impatient) as reader:
            assert serving_version(reader) == serving
            used, hits = search(reader, _vectors(200, 0)[3], model_fingerprint=FP_A, k=3, ef_search=40)
            assert used == serving and hits[0].id == "a3"
            assert [v.version for v in list_versions(reader)] == [serving]  # the pending one is not visible
        monkeypatch.setenv("EMBEDTUNE_DATABASE_URL", impatient)
        listed = CliRunner().invoke(app, ["versions"])
        assert listed.exit_code == 0 and serving in listed.output, listed.output
        assert time.perf_counter() - started < 10
        writer.rollback()


def test_the_same_model_over_a_changed_corpus_is_a_new_version_and_the_old_keeps_its_text(db_url: str) -> None:
    """A corpus that gained a document and had one edited, embedded by the same model: a reload must not be a
    no-op on the old version (its search would miss the new document), and the old version's hits, serving view
    and BM25 index keep the text its vectors were computed from."""
    n, fp = 30, "9" * 64
    ids, vectors = [f"c{i}" for i in range(n)], _vectors(n + 1, 31)
    texts = [f"plain body {i}" for i in range(n)]
    with connect(db_url) as conn:
        old = load_version(conn, fingerprint=fp, model_path="/m", ids=ids, vectors=vectors[:n],
                                 titles=ids, texts=texts)
        edited = texts[:3] + ["zeolite catalysis revised"] + texts[4:] + ["a new document"]
        new = load_version(conn, fingerprint=fp, model_path="/m", ids=ids + ["c30"], vectors=vectors,
                                 titles=ids + ["c30"], texts=edited)
        assert new.created and new.version != old.version and (old.rows, new.rows) == (n, n + 1)
        promote(conn, old.version, "old")
        _, hits = search(conn, vectors[3], model_fingerprint=fp, k=1)
        assert hits[0].text == "plain body 3"  # nor the new text of an old one
        assert conn.execute(f"SELECT text FROM {SERVING_VIEW} WHERE id = 'c3'").fetchone()[0] == "plain body 3"
        old_scores = LexicalIndex(conn, old.version).ranker.scores(["zeolite"])
        assert not old_scores.any()  # the old version's BM25 has never seen the edited text
        promote(conn, new.version, "new")
        _, hits = search(conn, vectors[n], model_fingerprint=fp, k=1)
        assert (hits[0].id, hits[0].text) == ("c30", "a new document")
        assert LexicalIndex(conn, new.version).ranker.scores(["zeolite"]).any()
        assert get_version(conn, fp[:12]).version == new.version  # a fingerprint prefix: the newest
        again = load_version(conn, fingerprint=fp, model_path="/m", ids=ids, vectors=vectors[:n],
                                   titles=ids, texts=texts)
        assert not again.created and again.version == old.version  # the same content: the same version
        prune(conn, keep_last=1)  # new serves, old is the rollback target: both stay
        assert conn.execute(f"SELECT to_regclass('{old.version}_docs')").fetchone()[0] is not None


def test_fingerprint_guard(db_url: str) -> None:
    with connect(db_url) as conn:
        promote(conn, _load(conn, FP_A, "a").version, "test")
        with pytest.raises(FingerprintMismatch, match="not comparable"):
            search(conn, _vectors(1, 5)[0], model_fingerprint=FP_B)
        with pytest.raises(IndexError_, match="no index version"):
            get_version(conn, "emb_ffffffffffffffff")


def test_a_model_of_another_width_is_promoted_and_rolled_back(db_url: str) -> None:
    """Switching the base model (all-MiniLM-L6-v2, 384 dimensions -> all-mpnet-base-v2, 768) changes the vector width."""
    with connect(db_url) as conn:
        narrow = _load(conn, FP_A, "a")
        promote(conn, narrow.version, "test")
        wide = _load(conn, FP_B, "w", dim=2 * DIM)
        assert promote(conn, wide.version, "a wider model") == narrow.version
        used, hits = search(conn, _vectors(200, 0, 2 * DIM)[3], model_fingerprint=FP_B, k=1)
        assert used == wide.version and hits[0].id == "w3" and hits[0].title == "title 3"
        rollback(conn)
        used, hits = search(conn, _vectors(200, 0)[3], model_fingerprint=FP_A, k=1)
        assert used == narrow.version and hits[0].id == "a3"


def test_rollback_and_prune(db_url: str) -> None:
    with connect(db_url) as conn:
        a, b, c = (_load(conn, fp, p).version for fp, p in ((FP_A, "a"), (FP_B, "b"), (FP_C, "c")))
        promote(conn, a, "first")
        promote(conn, b, "second")
        assert serving_version(conn) == b
        assert rollback(conn) == a
        assert serving_version(conn) == a
        promote(conn, c, "third")  # serving c, previous a: b is neither
        assert prune(conn, keep_last=1) == [b]
        assert {v.version for v in list_versions(conn)} == {a, c}
        assert conn.execute("SELECT to_regclass(%s)", (b,)).fetchone()[0] is None
        assert conn.execute("SELECT to_regclass(%s)", (f"{b}_docs",)).fetchone()[0] is None  # its texts went too
        assert conn.execute("SELECT to_regclass(%s)", (f"{a}_docs",)).fetchone()[0] is not None


def test_readers_never_see_a_partial_index_during_swaps(db_url: str) -> None:
    with connect(db_url) as conn:
        a, b = _load(conn, FP_A, "a", n=500).version, _load(conn, FP_B, "b", n=300, seed=1).version
        promote(conn, a, "start")
    problems: list[str] = []
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        with connect(db_url) as rconn:
            while not stop.is_set():
                count, prefixes = rconn.execute(
                    f"SELECT count(*), array_agg(DISTINCT left(id, 1)) FROM {SERVING_VIEW}").fetchone()
                seen.add(count)
                if (count, prefixes) not in ((500, ["a"]), (300, ["b"])):
                    problems.append(f"{count} rows, prefixes {prefixes}")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    with connect(db_url) as conn:
        for i in range(30):
            promote(conn, b if i % 2 == 0 else a, "swap")
            time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert not problems
    assert seen == {500, 300}


LOADER = """
import sys, numpy as np
from embedtune.serving.db import connect
from embedtune.serving.versions import load_version
n = 400_000
v = np.random.default_rng(0).standard_normal((n, 16)).astype(np.float32)
with connect(sys.argv[1]) as conn:
    print("loading", flush=True)
    load_version(conn, fingerprint="d" * 64, model_path="/m", ids=[str(i) for i in range(n)], vectors=v,
                 titles=[""] * n, texts=["x"] * n)
"""


def test_interrupted_load_leaves_serving_untouched_and_recovers(db_url: str) -> None:
    with connect(db_url) as conn:
        a = _load(conn, FP_A, "a").version
        promote(conn, a, "start")
    proc = subprocess.Popen([sys.executable, "-c", LOADER, db_url], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.stdout.readline().strip() == "loading"
    with connect(db_url) as watcher:  # wait until the COPY is under way, then kill the loader
        deadline = time.monotonic() + 60
        while not watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY emb_%%' "
                                  "AND state = 'active'").fetchone()[0]:
            assert time.monotonic() < deadline, "the loader never started its COPY"
            time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with connect(db_url) as conn:
        assert serving_version(conn) == a
        assert [v.version for v in list_versions(conn)] == [a]
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE tablename ~ '^emb_[0-9a-f]{16}'")}
        assert tables == {a, f"{a}_docs"}  # nothing of the killed load
        recovered = load_version(conn, fingerprint="d" * 64, model_path="/m", ids=["x", "y"],
                                       vectors=_vectors(2, 3), titles=["", ""], texts=["", ""])
        assert recovered.created and recovered.rows == 2


COMPARISON = {"primary_metric": "ndcg@10", "paired_t_test_p": 0.03,
              "metrics": {"ndcg@10": {"baseline": 0.645, "finetuned": 0.650, "delta": 0.005}}}


def test_gate_refuses_a_worse_or_insignificant_model() -> None:
    worse = {**COMPARISON, "metrics": {"ndcg@10": {"baseline": 0.645, "finetuned": 0.640, "delta": -0.005}}}
    assert not decide(worse, min_improvement=0.0).promote
    assert "below the required" in decide(worse, min_improvement=0.0).reason
    assert decide(worse, min_improvement=0.0, force=True).promote
    assert decide(COMPARISON, min_improvement=0.005).promote
    assert not decide(COMPARISON, min_improvement=0.01).promote
    assert not decide(COMPARISON, min_improvement=0.0, max_p_value=0.01).promote


def test_the_gate_never_promotes_on_synthetic_test_queries_alone() -> None:
    """Documents only: a large, significant gain measured on generated test queries still needs reindex.force."""
    synthetic = {**COMPARISON, "test_source": "synthetic", "paired_t_test_p": 1e-9,
                 "metrics": {"ndcg@10": {"baseline": 0.5, "finetuned": 0.7, "delta": 0.2}}}
    refused = decide(synthetic, min_improvement=0.005, max_p_value=0.05)
    assert not refused.promote and "synthetic test queries" in refused.reason and "judge export" in refused.reason
    assert decide(synthetic, min_improvement=0.005, max_p_value=0.05, force=True).promote
    assert decide({**synthetic, "test_source": "human"}, min_improvement=0.005, max_p_value=0.05).promote


def test_the_default_gate_refuses_a_gain_that_is_not_significant_and_says_what_to_try() -> None:
    """A low-data domain's +0.0075 at p = 0.74 was promoted: by default the gain must be significant too."""
    import yaml

    from tests.conftest import REPO

    gate = yaml.safe_load((REPO / "params.yaml").read_text())["reindex"]
    lucky = {**COMPARISON, "paired_t_test_p": 0.74,
             "metrics": {"ndcg@10": {"baseline": 0.580, "finetuned": 0.5875, "delta": 0.0075}}}
    refused = decide(lucky, min_improvement=gate["min_improvement"], max_p_value=gate["max_p_value"])
    assert not refused.promote and "not significant at p <= 0.05" in refused.reason
    assert "add training pairs" in refused.reason and "synthetic.enabled=true" in refused.reason
    assert decide(COMPARISON, min_improvement=gate["min_improvement"], max_p_value=gate["max_p_value"]).promote


def test_search_returns_k_documents_even_when_ef_search_is_lower(db_url: str) -> None:
    with connect(db_url) as conn:
        loaded = _load(conn, FP_E, "e", n=200, seed=5)
        conn.execute("SET enable_seqscan = off")  # a table this small would otherwise be scanned, not searched
        conn.commit()
        _, hits = search(conn, _vectors(1, 6)[0], model_fingerprint=FP_E, k=60, ef_search=20,
                               version=loaded.version)
        assert len(hits) == 60  # HNSW returns at most ef_search rows: the search widens it to 2k


def test_documents_with_tail_views_score_as_their_best_vector(db_url: str) -> None:
    from embedtune.embed.views import ExtraViews

    n = 50
    heads, tails = _vectors(n, 11), _vectors(10, 12)
    ids = [f"t{i}" for i in range(n)]
    views = ExtraViews(np.arange(10) * 5, tails)  # documents t0, t5, ..., t45 have a tail view
    with connect(db_url) as conn:
        plain = load_version(conn, fingerprint=FP_C, model_path="/m", ids=ids, vectors=heads,
                                   titles=ids, texts=["body"] * n)
        tailed = load_version(conn, fingerprint=FP_C, model_path="/m", ids=ids, vectors=heads,
                                    titles=ids, texts=["body"] * n, views=views, layout="tail128")
        # the same model in another layout is another version, not a no-op on the first
        assert tailed.created and tailed.version != plain.version and (plain.rows, tailed.rows) == (50, 60)
        _, hits = search(conn, tails[3], model_fingerprint=FP_C, k=5, ef_search=100, version=tailed.version)
        assert hits[0].id == "t15" and hits[0].score == pytest.approx(1.0, abs=1e-5)  # found by its tail
        assert len({h.id for h in hits}) == 5  # k distinct documents, each once
        _, plain_hits = search(conn, tails[3], model_fingerprint=FP_C, k=5, ef_search=100, version=plain.version)
        assert plain_hits[0].score < 0.99
        exact = np.maximum(heads @ tails[3], np.full(n, -1.0))
        exact[np.arange(10) * 5] = np.maximum(exact[np.arange(10) * 5], tails @ tails[3])
        assert [h.id for h in hits] == [ids[i] for i in np.argsort(-exact)[:5]]
        promote(conn, tailed.version, "tails")
        rows = conn.execute(f"SELECT view, count(*), count(DISTINCT id) FROM {SERVING_VIEW} "
                            "GROUP BY view ORDER BY view").fetchall()
        assert rows == [(0, 50, 50), (1, 10, 10)]  # the serving view says which vector each row is
        with pytest.raises(IndexError_, match="layout"):
            load_version(conn, fingerprint=FP_B, model_path="/m", ids=ids, vectors=heads, titles=ids,
                               texts=["body"] * n, views=views)


def test_hybrid_search_serves_the_ranking_the_evaluation_measured(db_url: str) -> None:
    from embedtune.embed.views import ExtraViews
    from embedtune.evaluation.retrieval import search as exact_search
    from embedtune.lexical import LexicalFusion

    n = 40
    heads, tails = _vectors(n, 21), _vectors(8, 22)
    ids = [f"h{i:02d}" for i in range(n)]
    texts = [f"alpha{i % 5} beta{i % 7} gamma{i}" for i in range(n)]
    views = ExtraViews(np.arange(8) * 5, tails)
    query, text = _vectors(1, 23)[0], "alpha2 beta3 gamma17"  # h17 has all three words, gamma17 only h17
    with connect(db_url) as conn:
        loaded = load_version(conn, fingerprint=FP_F, model_path="/m", ids=ids, vectors=heads,
                                    titles=[f"title {i}" for i in range(n)], texts=texts, views=views,
                                    layout="tail128")
        lexical = LexicalIndex(conn, loaded.version)
        assert lexical.ids == ids
        fusion = LexicalFusion(lexical.ranker, ids, {"q": text}, weight=0.3)
        exact = exact_search(["q"], query[None], ids, heads, top_k=n, views=views, lexical=fusion)["q"]
        _, hits = hybrid_search(conn, query, text, lexical, model_fingerprint=FP_F, lexical_weight=0.3, k=10,
                                      candidates=n)
        assert [h.id for h in hits] == list(exact)[:10]
        assert [h.score for h in hits] == pytest.approx([exact[h.id] for h in hits], abs=1e-5)
        assert hits[0].title.startswith("title ") and hits[0].text.startswith("alpha")
        # few candidates: the best of the union of the 3 nearest and BM25's 3 best, by their exact fused scores;
        # h17, far from the query vector, is found by its words and gets its dense score looked up
        heavy = LexicalFusion(lexical.ranker, ids, {"q": text}, weight=2.0)
        exact = exact_search(["q"], query[None], ids, heads, top_k=n, views=views, lexical=heavy)["q"]
        _, few = hybrid_search(conn, query, text, lexical, model_fingerprint=FP_F, lexical_weight=2.0, k=3,
                                     candidates=3)
        dense = exact_search(["q"], query[None], ids, heads, top_k=3, views=views)["q"]
        bonus = heavy.scores(["q"])[0]
        bm25 = [ids[i] for i in np.flatnonzero(bonus >= np.sort(bonus)[-3])]  # BM25's best 3, ties kept
        union = sorted(set(dense) | set(bm25), key=lambda d: -exact[d])
        assert "h17" in bm25 and "h17" not in dense and "h17" in union[:3] and [h.id for h in few] == union[:3]
        assert [h.score for h in few] == pytest.approx([exact[h.id] for h in few], abs=1e-5)
        with pytest.raises(FingerprintMismatch):
            hybrid_search(conn, query, text, lexical, model_fingerprint=FP_A, lexical_weight=0.3)
        # weight 0: the dense search itself, no BM25 index needed; a weight without the version's BM25 index: refused
        assert hybrid_search(conn, query, text, None, model_fingerprint=FP_F, lexical_weight=0, k=5,
                                   version=loaded.version) == search(conn, query, model_fingerprint=FP_F, k=5,
                                                                           version=loaded.version)
        with pytest.raises(ValueError, match="LexicalIndex"):
            hybrid_search(conn, query, text, None, model_fingerprint=FP_F, lexical_weight=0.3,
                                version=loaded.version)


def test_queries_are_encoded_in_the_precision_the_version_recorded(db_url: str) -> None:
    with connect(db_url) as conn:
        recorded = load_version(conn, fingerprint="1" * 64, model_path="/m", ids=["x", "y"],
                                      vectors=_vectors(2, 31), titles=["x", "y"], texts=["a", "b"],
                                      query_precision="bf16")
        older = load_version(conn, fingerprint="2" * 64, model_path="/m", ids=["x", "y"],
                                   vectors=_vectors(2, 32), titles=["x", "y"], texts=["a", "b"])
        assert query_precision(get_version(conn, recorded.version)) == "bf16"
        assert query_precision(get_version(conn, older.version)) == "fp32"  # the default: vectors encoded in fp32


def test_halfvec_stores_half_the_bytes_is_another_version_and_serves_through_its_hnsw_index(db_url: str) -> None:
    """The same vectors as ``halfvec``: another version (never a no-op on the ``vector`` one), a 16-bit column
    with its own HNSW index that the planner uses for the served query, promotable like any version, and ranking
    as the ``vector`` version does up to ties within 16-bit rounding."""
    n, dim = 300, 384  # MiniLM's width: the vectors, not the pages' overhead, fill the index
    vectors = _vectors(n, seed=5, dim=dim)
    common = {"fingerprint": FP_A, "model_path": "/models/half", "ids": [f"h{i}" for i in range(n)],
              "vectors": vectors, "titles": [f"title {i}" for i in range(n)], "texts": ["body"] * n}
    with connect(db_url) as conn:
        full = load_version(conn, **common)
        half = load_version(conn, **common, vector_type="halfvec")
        assert half.created and half.version != full.version
        assert not load_version(conn, **common, vector_type="halfvec").created  # the same again: a no-op
        types = dict(conn.execute(
            "SELECT c.relname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class c "
            "ON c.oid = a.attrelid WHERE a.attname = 'embedding' AND c.relname = ANY(%s)",
            ([full.version, half.version],)).fetchall())
        assert types == {full.version: f"vector({dim})", half.version: f"halfvec({dim})"}
        for size in ("pg_relation_size('{}_hnsw')", "pg_table_size('{}')"):
            full_bytes, half_bytes = (conn.execute(f"SELECT {size.format(v)}").fetchone()[0]
                                      for v in (full.version, half.version))
            assert half_bytes < 0.65 * full_bytes, size
        promote(conn, half.version, "test")
        queries = _vectors(20, seed=6, dim=dim)
        with conn.transaction():  # 300 rows are cheaper to scan than to search: ask whether the index can serve
            conn.execute("SET LOCAL enable_seqscan = off")
            plan = conn.execute(f"EXPLAIN SELECT id FROM {SERVING_VIEW} ORDER BY embedding <=> %s LIMIT 10",
                                (queries[0],)).fetchall()
        assert any(f"{half.version}_hnsw" in str(line[0]) for line in plan)
        for query in queries:
            _, served = search(conn, query, model_fingerprint=FP_A, k=10, ef_search=200)
            _, exact = search(conn, query, model_fingerprint=FP_A, k=10, ef_search=200, version=full.version)
            assert [h.id for h in served] == [h.id for h in exact] or \
                max(abs(a.score - b.score) for a, b in zip(served, exact)) < 2e-3
        with pytest.raises(IndexError_, match="vector type"):
            load_version(conn, **common, vector_type="bit")
