"""The ``embedtune`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(help="embedtune: fine-tune, evaluate and serve domain embedding models.", no_args_is_help=True)


@app.command("compose-params")
def compose_params_command(overrides: list[str] = typer.Argument(None, help="Hydra overrides, e.g. data=scifact_sample")) -> None:
    """Compose params.yaml from conf/ (what `dvc exp run` does), so `dvc repro` sees edits to conf/."""
    from embedtune.config import main

    main(overrides or [])


if __name__ == "__main__":
    app()
