"""The command line: user errors are one line and exit status 1; the database commands work on a fresh database."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from embedtune.cli import app

runner = CliRunner()


@pytest.fixture
def database(empty_db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EMBEDTUNE_DATABASE_URL", empty_db_url)
    return empty_db_url


def test_reading_commands_on_a_database_without_an_index_say_what_to_run(database: str) -> None:
    for command in (["versions"], ["search", "vitamin D"], ["ab", "report", "default"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, (command, result.output)
        assert "holds no embedtune index yet: run `dvc repro`" in result.output
        assert "Traceback" not in result.output


def test_migrate_applies_the_schema_once_then_versions_lists_none(database: str) -> None:
    first = runner.invoke(app, ["migrate"])
    assert first.exit_code == 0 and "embedtune schema at version 1" in first.output
    assert runner.invoke(app, ["migrate"]).exit_code == 0  # a second run changes nothing
    result = runner.invoke(app, ["versions"])
    assert result.exit_code == 0 and "no index versions yet" in result.output
    result = runner.invoke(app, ["rollback"])
    assert result.exit_code == 1 and "nothing to roll back to" in result.output


def test_an_empty_query_and_a_bad_weight_are_refused_before_anything_loads(database: str) -> None:
    assert "the query is empty" in runner.invoke(app, ["search", "  "]).output
    result = runner.invoke(app, ["search", "vitamin D", "--lexical-weight", "-1"])
    assert result.exit_code == 1 and "lexical weight" in result.output
