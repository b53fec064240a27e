"""The table of every system on the test split."""

from __future__ import annotations

from embedtune.evaluation.systems import plot_systems, system_rows, write_systems_table


def _figures(ndcg: float) -> dict:
    return {"ndcg@10": ndcg, "recall@10": ndcg + 0.1, "mrr@10": ndcg - 0.05}


def test_the_table_sets_every_system_side_by_side_best_first(tmp_path) -> None:
    hybrid = {"lexical_weight": 0.3, "test": {"queries": 300, "bm25": _figures(0.69), "base+bm25": _figures(0.73),
                                              "finetuned+bm25": _figures(0.77)}}
    rows = system_rows({**_figures(0.67), "test_source": "human"}, _figures(0.75), hybrid,
                       {"all-mpnet-base-v2": {**_figures(0.64), "parameters": 109_000_000}}, base_name="MiniLM")
    assert [r["kind"] for r in rows] == ["lexical", "base", "general", "fine-tuned", "hybrid", "hybrid"]
    write_systems_table(tmp_path / "systems.md", rows, queries=300)
    table = (tmp_path / "systems.md").read_text().splitlines()
    assert table[0] == "# Every system on the test split (300 queries)"
    assert table[4].startswith("| fine-tuned + 0.3 x BM25 (served) | 0.7700")  # best first
    assert "| all-mpnet-base-v2, not fine-tuned | 0.6400 | 0.7400 | 0.5900 | 109M |" in table
    plot_systems(tmp_path / "systems.png", rows, title="test")
    assert (tmp_path / "systems.png").read_bytes()[:4] == b"\x89PNG"


def test_without_hybrid_search_or_general_models_the_table_has_the_models_and_bm25() -> None:
    rows = system_rows(_figures(0.6), _figures(0.62), {"lexical_weight": 0, "test": {"bm25": _figures(0.3)}}, {},
                       base_name="MiniLM")
    assert [r["system"] for r in rows] == ["BM25 alone", "MiniLM, not fine-tuned", "MiniLM, fine-tuned"]
