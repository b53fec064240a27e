"""The ``embedtune`` command line: search the serving index, manage index versions, serve, report A/B tests."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from embedtune.errors import EmbedtuneError

app = typer.Typer(help="embedtune: fine-tune, evaluate and serve domain embedding models.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
ab_app = typer.Typer(help="A/B test reports and click export.", no_args_is_help=True)
app.add_typer(ab_app, name="ab")
judge_app = typer.Typer(help="Expert judgements: queue queries for the judging page, report, export qrels.",
                        no_args_is_help=True)
app.add_typer(judge_app, name="judge")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


def command(group: typer.Typer = app, name: str | None = None) -> Callable[[Callable], Callable]:
    """Register a command of ``group`` whose user errors (``EmbedtuneError``) end it with one line, exit status 1."""
    def register(func: Callable) -> Callable:
        @functools.wraps(func)
        def run(*args, **kwargs):
            # Python's default for SIGTERM (`kill`, `timeout`, a process manager) ends the process on the spot,
            # skipping its exit handlers, which left the embedded PostgreSQL running; this one exits normally
            # (status 143), so the server is stopped when its last user goes.
            signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
            try:
                return func(*args, **kwargs)
            except EmbedtuneError as exc:
                _fail(exc)

        return group.command(name)(run)

    return register


@command(name="compose-params")
def compose_params_command(
    overrides: list[str] | None = typer.Argument(None, help="Hydra overrides, e.g. data=scifact_sample"),
) -> None:
    """Compose params.yaml from conf/ (what `dvc exp run` does), so `dvc repro` sees edits to conf/."""
    from embedtune.config import main

    main(overrides or [])


LEXICAL_WEIGHT_HELP = ("BM25's weight in hybrid search (0: by meaning only; default: params.yaml's "
                       "evaluate.lexical_weight, for auto the weight the hybrid stage chose, or 0 without either)")


def _lexical_weight(option: float | None) -> float:
    """The hybrid-search weight: the option, else params.yaml's ``evaluate.lexical_weight`` (for ``auto``: the
    weight the hybrid stage chose, in ``metrics/hybrid.json``), else 0 (dense only)."""
    from embedtune.config import PARAMS_FILE, get, load_params
    from embedtune.lexical import check_lexical_weight, served_weight

    if option is None:
        return served_weight(get(load_params(), "evaluate.lexical_weight", 0.0) if PARAMS_FILE.is_file() else 0.0)
    return check_lexical_weight(option)


@command()
def search(
    query: str = typer.Argument(..., help="what to search for"),
    k: int = typer.Option(10, "-k", "--top-k", min=1, max=1000, help="number of results"),
    model: Path | None = typer.Option(None, help="model to embed the query with (default: the serving version's)"),
    ef_search: int = typer.Option(80, help="HNSW search breadth (higher: better recall, slower)"),
    version: str | None = typer.Option(None, help="search this version instead of the serving one"),
    onnx: Path | None = typer.Option(None, help="embed the query with this ONNX export (int8) of the model"),
    lexical_weight: float | None = typer.Option(None, help=LEXICAL_WEIGHT_HELP),
) -> None:
    """Search the serving index (by meaning and, with a lexical weight, by words too): ids, titles and scores."""
    from embedtune.embed.encoder import encode
    from embedtune.models import load_model, model_fingerprint
    from embedtune.serving.db import IndexError_, connect
    from embedtune.serving.search import LexicalIndex, hybrid_search
    from embedtune.serving.versions import get_version, query_precision, serving_version

    if not query.strip():
        _fail(ValueError("the query is empty"))
    weight = _lexical_weight(lexical_weight)
    with connect() as conn:
        target = get_version(conn, version) if version else None
        if target is None:
            serving = serving_version(conn)
            if serving is None:
                raise IndexError_("no index is serving yet: run `dvc repro` (its reindex stage) first")
            target = get_version(conn, serving)
        if onnx:
            from embedtune.embed.onnx import OnnxEncoder

            encoder = OnnxEncoder(onnx)
            fingerprint, vector = encoder.fingerprint, encoder.encode([query])[0]
        else:
            model_dir = model or Path(target.model_path)
            fingerprint = model_fingerprint(model_dir)
            vector = encode(load_model(model_dir), [query], precision=query_precision(target),
                            show_progress=False)[0]
        lexical = LexicalIndex(conn, target.version) if weight > 0 else None
        used, hits = hybrid_search(conn, vector, query, lexical, model_fingerprint=fingerprint,
                                         lexical_weight=weight, k=k, ef_search=ef_search, version=target.version)
    typer.echo(f"index {used}  ({len(hits)} results)")
    for rank, hit in enumerate(hits, start=1):
        title = hit.title or hit.text[:80]
        typer.echo(f"{rank:>3}. {hit.score:.4f}  {hit.id:<14} {title}" + (f"\n{'':>13}{hit.provenance}" if hit.provenance else ""))


@command()
def versions() -> None:
    """List index versions and which one serves."""
    from embedtune.serving.db import connect
    from embedtune.serving.versions import list_versions

    with connect() as conn:
        rows = list_versions(conn)
    if not rows:
        typer.echo("no index versions yet: run `dvc repro`")
        return
    typer.echo(f"{'':2}{'version':<22}{'rows':>8}{'dim':>5}  {'ndcg@10':>8}  {'created':<20} commit    model")
    for v in rows:
        ndcg = v.metrics.get("comparison", {}).get("ndcg@10", {}).get("finetuned")
        mark = "* " if v.serving else "  "
        typer.echo(f"{mark}{v.version:<22}{v.rows:>8}{v.dim:>5}  {ndcg if ndcg is not None else '':>8}  "
                   f"{v.created_at:%Y-%m-%d %H:%M:%S}  {(v.source_commit or '')[:8]:<8}  {v.model_path}")
    typer.echo("* serving")


@command()
def promote(version: str = typer.Argument(..., help="version name (or fingerprint prefix)")) -> None:
    """Serve VERSION (an explicit override of the promotion gate)."""
    from embedtune.serving.db import connect
    from embedtune.serving.versions import get_version
    from embedtune.serving.versions import promote as promote_version

    with connect(migrate_schema=True) as conn:
        target = get_version(conn, version).version
        previous = promote_version(conn, target, "manual promote")
    typer.echo(f"serving {target} (was {previous})")


@command()
def rollback() -> None:
    """Serve the previously serving version again."""
    from embedtune.serving.db import connect
    from embedtune.serving.versions import rollback as rollback_version

    with connect(migrate_schema=True) as conn:
        target = rollback_version(conn)
    typer.echo(f"rolled back: serving {target}")


@command()
def prune(keep_last: int = typer.Option(3, min=1, help="versions to keep (serving and previous always kept)")) -> None:
    """Drop old index versions."""
    from embedtune.serving.db import connect
    from embedtune.serving.versions import prune as prune_versions

    with connect(migrate_schema=True) as conn:
        dropped = prune_versions(conn, keep_last)
    typer.echo(f"dropped {len(dropped)} version(s): {', '.join(dropped) or '-'}")


@command()
def migrate() -> None:
    """Create or upgrade embedtune's tables in the database (the reindex stage does it too)."""
    from embedtune.serving.db import connect, database_url, redact, schema_version

    with connect(migrate_schema=True) as conn:
        version = schema_version(conn)
    typer.echo(f"{redact(database_url())}: embedtune schema at version {version}")


@command()
def roles(
    service: list[str] = typer.Option([], help="login role of `embedtune serve` (repeatable)"),
    reader: list[str] = typer.Option([], help="login role that only reads: reports, `versions` (repeatable)"),
) -> None:
    """Set up the database roles a deployment uses (run as the tables' owner): embedtune_service may read the
    indexes and only add to the A/B logs, embedtune_reader only reads; login roles become their members."""
    from embedtune.serving.db import connect
    from embedtune.serving.roles import grant_roles

    with connect(migrate_schema=True) as conn:
        for line in grant_roles(conn, service=service, reader=reader):
            typer.echo(line)


@command()
def purge(
    user: str | None = typer.Option(None, help="erase every search and click of this user id"),
    older_than_days: float | None = typer.Option(None, help="erase the searches and clicks older than this"),
) -> None:
    """Erase A/B log entries (a user's right to erasure, or retention by age) as the tables' owner; each purge is
    itself logged, with its counts but not the user id."""
    from embedtune.serving.db import connect
    from embedtune.serving.roles import purge as purge_logs

    with connect() as conn:
        detail = purge_logs(conn, user=user, older_than_days=older_than_days)
    typer.echo(f"purged {detail['impressions']} search(es) and {detail['clicks']} click(s)")


@command(name="export-onnx")
def export_onnx_command(
    model: Path = typer.Argument(Path("models/finetuned"), help="sentence-transformers model directory"),
    output: Path = typer.Option(Path("models/finetuned-onnx"), help="export directory"),
    quantize: bool = typer.Option(True, help="also write an int8 dynamically quantized model"),
) -> None:
    """Export a model to ONNX (fp32 and int8) for fast CPU inference; `search --onnx` and the service use it."""
    from embedtune.embed.onnx import export_onnx

    meta = export_onnx(model, output, quantize=quantize)
    typer.echo(f"exported {model} -> {output}: {', '.join(meta['files'])}")


@command(name="load")
def load_command(
    model: str = typer.Option(..., help="model directory or package:<module>/<dir> the vectors were made with"),
    embeddings: Path = typer.Option(..., help="embeddings directory (an embed stage output)"),
    corpus: Path = typer.Option(Path("data/prepared/corpus.jsonl"), help="documents (titles and texts)"),
    vector_type: str = typer.Option("halfvec", help="halfvec (16-bit, as the reindex stage stores) | vector"),
) -> None:
    """Load precomputed corpus vectors as an index version without serving it (e.g. the base model, as the
    control arm of an A/B test)."""
    from embedtune.data.beir import read_corpus
    from embedtune.embed.store import load_embeddings, load_views
    from embedtune.embed.views import view_layout
    from embedtune.models import model_fingerprint, resolve_model_path
    from embedtune.serving.db import connect
    from embedtune.serving.versions import load_version

    model_dir = resolve_model_path(model).resolve()
    ids, vectors, meta = load_embeddings(embeddings)
    docs = read_corpus(corpus)
    with connect(migrate_schema=True) as conn:
        loaded = load_version(conn, fingerprint=model_fingerprint(model_dir), model_path=str(model_dir),
                                    ids=ids, vectors=vectors, titles=[docs[i].title for i in ids],
                                    texts=[docs[i].text for i in ids], views=load_views(embeddings, ids),
                                    layout=view_layout(meta), query_precision=meta.get("precision", "fp32"),
                                    metadata=[docs[i].metadata for i in ids], vector_type=vector_type)
    typer.echo(f"{'loaded' if loaded.created else 'already loaded'}: {loaded.version} ({loaded.rows} rows)")


@command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8000),
    experiment: str = typer.Option("default", help="experiment name: impressions and clicks are logged under it"),
    mode: str = typer.Option("off", help="off (serving index only) | bucket (per-user arms) | interleave (team draft)"),
    control: str | None = typer.Option(None, help="control version (default: the serving one)"),
    treatment: str | None = typer.Option(None, help="treatment version (bucket / interleave)"),
    share: float = typer.Option(0.5, help="bucket mode: share of users in the treatment arm"),
    ef_search: int = typer.Option(80),
    onnx: Path | None = typer.Option(None, help="embed control-arm queries with this ONNX export (int8)"),
    lexical_weight: float | None = typer.Option(None, help=LEXICAL_WEIGHT_HELP),
    max_batch: int = typer.Option(64, min=1, help="concurrent requests' queries encoded in one forward pass, at "
                                                   "most this many (1: each alone)"),
    judge_version: list[str] = typer.Option([], help="judging page: also pool this version's ranking, e.g. the base "
                                                     "model's (repeatable; the arms and BM25 are always pooled)"),
    judge_depth: int = typer.Option(10, min=1, max=100, help="judging page: each system's top results pooled"),
) -> None:
    """Run the HTTP search service (GET /search, POST /click, a search page at /, the judging page at /judge with
    EMBEDTUNE_JUDGE_TOKEN set, OpenAPI at /docs)."""
    import uvicorn

    from embedtune.serving.app import create_app
    from embedtune.serving.db import database_url
    from embedtune.serving.service import Experiment, SearchService

    service = SearchService(database_url(), Experiment(experiment, mode, control, treatment, share),
                            ef_search=ef_search, onnx={"control": onnx} if onnx else None,
                            lexical_weight=_lexical_weight(lexical_weight), max_batch=max_batch,
                            judge_versions=tuple(judge_version), judge_depth=judge_depth)
    typer.echo(f"serving experiment {experiment!r} ({mode}): " +
               ", ".join(f"{n}={a.version}" for n, a in service.arms.items()) + f" on http://{host}:{port}/")
    try:  # uvicorn shuts down on SIGTERM, then raises it again under the handler ``command`` set
        uvicorn.run(create_app(service), host=host, port=port, log_level="warning")
    finally:
        service.close()


@command(ab_app, "report")
def ab_report(experiment: str = typer.Argument("default"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Per arm: impressions, CTR, MRR of clicks, abandonment; interleaving wins/ties/losses; a verdict."""
    import json

    from embedtune.serving.ablog import report
    from embedtune.serving.db import connect

    with connect() as conn:
        result = report(conn, experiment)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    versions = result["versions"]
    typer.echo(f"experiment {result['experiment']} ({result['mode']}): control {versions['control']}, "
               f"treatment {versions['treatment']}; {result['impressions']} impressions")
    if "interleaving" in result:
        i = result["interleaving"]
        typer.echo(f"  interleaving: treatment won {i['treatment_wins']}, lost {i['treatment_losses']}, tied {i['ties']} "
                   f"({i['searches_without_click']} searches without click)")
        typer.echo(f"  preference for treatment {i['preference_share']} (95% CI {i['preference_ci95']})")
    for arm in ("control", "treatment"):
        if arm in result:
            m = result[arm]
            typer.echo(f"  {arm:<9} searches {m['searches']:>6}  CTR {m['ctr']} {m['ctr_ci95']}  "
                       f"MRR {m['mrr']} {m['mrr_ci95']}  abandonment {m['abandonment']}")
    verdict = result["verdict"]
    need = result.get("interleaving", {}).get("searches_needed_estimate") or result.get("searches_needed_per_arm_estimate")
    typer.echo(f"verdict: {verdict}" + (f" (about {need} searches needed)" if need else ""))


@command(ab_app, "export")
def ab_export(experiment: str = typer.Argument("default"),
              output: Path = typer.Option(..., help="click-log JSONL to write (the clicks.jsonl input format)")) -> None:
    """Export an experiment's searches and clicks as a click log, ready to train the next model on."""
    from embedtune.serving.ablog import export_clicks
    from embedtune.serving.db import connect

    with connect() as conn:
        n = export_clicks(conn, experiment, output)
    typer.echo(f"wrote {n} searches to {output}")


@command(judge_app, "add")
def judge_add(
    queries: Path | None = typer.Argument(None, help="queries.jsonl (BEIR: _id, text) or a text file, one per line"),
    text: list[str] = typer.Option([], help="a query typed here (repeatable)"),
    from_clicks: str | None = typer.Option(None, help="the queries searched in this A/B experiment"),
) -> None:
    """Queue queries for the judging page (a query already queued is kept once)."""
    from embedtune.serving.db import connect
    from embedtune.serving.judging import add_queries, read_query_file

    with connect() as conn:
        added = add_queries(conn, [(None, t) for t in text], "typed")
        if queries is not None:
            added += add_queries(conn, read_query_file(queries), "file")
        if from_clicks is not None:
            rows = conn.execute("SELECT DISTINCT query FROM embedtune_impressions WHERE experiment = %s",
                                (from_clicks,)).fetchall()
            added += add_queries(conn, [(None, r[0]) for r in rows], "clicks")
    typer.echo(f"queued {added} new quer{'y' if added == 1 else 'ies'}")


@command(judge_app, "report")
def judge_report(as_json: bool = typer.Option(False, "--json")) -> None:
    """Queries queued and judged, judgements by grade, judges, and their agreement (Cohen's kappa)."""
    import json

    from embedtune.serving.db import connect
    from embedtune.serving.judging import report

    with connect() as conn:
        result = report(conn)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['judged_queries']} of {result['queued_queries']} queued queries judged: "
               f"{result['judgements']} judgements by {result['judges']} judge(s) {result['grades']}")
    typer.echo(f"agreement: Cohen's kappa {result['cohen_kappa']} over {result['doubly_judged']} doubly-judged "
               "documents")


@command(judge_app, "export")
def judge_export(
    output: Path = typer.Option(..., help="directory for queries.jsonl and qrels/{test,train}.tsv (e.g. the data "
                                "directory, beside corpus.jsonl; nothing else in it is touched)"),
    test_queries: int = typer.Option(100, min=0, help="judged queries held out for the test split (the first ones)"),
    overwrite: bool = typer.Option(False, help="replace an existing queries.jsonl and qrels files there"),
) -> None:
    """Write the judged queries as BEIR files: graded qrels, the first --test-queries of them as the test split."""
    from embedtune.serving.db import connect
    from embedtune.serving.judging import export_qrels

    with connect() as conn:
        counts = export_qrels(conn, output, test_queries=test_queries, overwrite=overwrite)
    typer.echo(f"wrote {output}: {counts}")


def main() -> None:  # pragma: no cover - console entry point
    from embedtune.runtime import offline_environment

    offline_environment()
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
