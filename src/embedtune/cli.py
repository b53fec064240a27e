"""The ``embedtune`` command line: search the serving index and manage index versions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from embedtune.errors import EmbedtuneError

app = typer.Typer(help="embedtune: fine-tune, evaluate and serve domain embedding models.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


@app.command("compose-params")
def compose_params_command(
    overrides: Optional[list[str]] = typer.Argument(None, help="Hydra overrides, e.g. data=scifact_sample"),
) -> None:
    """Compose params.yaml from conf/ (what `dvc exp run` does), so `dvc repro` sees edits to conf/."""
    from embedtune.config import main

    main(overrides or [])


@app.command()
def search(
    query: str = typer.Argument(..., help="what to search for"),
    k: int = typer.Option(10, "-k", "--top-k", min=1, max=1000, help="number of results"),
    model: Optional[Path] = typer.Option(None, help="model to embed the query with (default: the serving version's)"),
    ef_search: int = typer.Option(80, help="HNSW search breadth (higher: better recall, slower)"),
    version: Optional[str] = typer.Option(None, help="search this version instead of the serving one"),
) -> None:
    """Search the serving index: ids, titles and scores."""
    from embedtune import index
    from embedtune.embeddings import encode
    from embedtune.models import load_model

    if not query.strip():
        _fail(ValueError("the query is empty"))
    try:
        with index.connect() as conn:
            target = index.get_version(conn, version) if version else None
            if target is None:
                serving = index.serving_version(conn)
                if serving is None:
                    raise index.IndexError_("no index is serving yet: run `dvc repro` (its reindex stage) first")
                target = index.get_version(conn, serving)
            model_dir = model or Path(target.model_path)
            fingerprint = index.model_fingerprint(model_dir)
            vector = encode(load_model(model_dir), [query], show_progress=False)[0]
            used, hits = index.search(conn, vector, model_fingerprint=fingerprint, k=k, ef_search=ef_search,
                                      version=target.version)
    except EmbedtuneError as exc:
        _fail(exc)
    typer.echo(f"index {used}  ({len(hits)} results)")
    for rank, hit in enumerate(hits, start=1):
        title = hit.title or hit.text[:80]
        typer.echo(f"{rank:>3}. {hit.score:.4f}  {hit.id:<14} {title}")


@app.command()
def versions() -> None:
    """List index versions and which one serves."""
    from embedtune import index

    try:
        with index.connect() as conn:
            rows = index.list_versions(conn)
    except EmbedtuneError as exc:
        _fail(exc)
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


@app.command()
def promote(version: str = typer.Argument(..., help="version name (or fingerprint prefix)")) -> None:
    """Serve VERSION (an explicit override of the promotion gate)."""
    from embedtune import index

    try:
        with index.connect() as conn:
            target = index.get_version(conn, version).version
            previous = index.promote(conn, target, "manual promote")
    except EmbedtuneError as exc:
        _fail(exc)
    typer.echo(f"serving {target} (was {previous})")


@app.command()
def rollback() -> None:
    """Serve the previously serving version again."""
    from embedtune import index

    try:
        with index.connect() as conn:
            target = index.rollback(conn)
    except EmbedtuneError as exc:
        _fail(exc)
    typer.echo(f"rolled back: serving {target}")


@app.command()
def prune(keep_last: int = typer.Option(3, min=1, help="versions to keep (serving and previous always kept)")) -> None:
    """Drop old index versions."""
    from embedtune import index

    try:
        with index.connect() as conn:
            dropped = index.prune(conn, keep_last)
    except EmbedtuneError as exc:
        _fail(exc)
    typer.echo(f"dropped {len(dropped)} version(s): {', '.join(dropped) or '-'}")


def main() -> None:  # pragma: no cover - console entry point
    from embedtune.stage import offline_environment

    offline_environment()
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
