"""Compose ``params.yaml`` from the Hydra config in ``conf/`` exactly as ``dvc exp run`` does.

``dvc exp run`` composes params.yaml itself; ``dvc repro`` reads it as committed. After editing ``conf/``,
run ``python -m embedtune.config`` (optionally with Hydra overrides such as ``data=scifact_sample``) so
``dvc repro`` sees the change, and commit the result.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

CONFIG_DIR = Path("conf")
CONFIG_NAME = "config"


def compose_params(overrides: Sequence[str] = (), config_dir: Path = CONFIG_DIR) -> str:
    """The YAML text Hydra composes from ``config_dir`` with ``overrides`` (resolved, like DVC)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(Path(config_dir).resolve()), version_base=None):
        cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return OmegaConf.to_yaml(cfg)


def main(argv: Sequence[str] | None = None) -> None:
    overrides = list(sys.argv[1:] if argv is None else argv)
    Path("params.yaml").write_text(compose_params(overrides), encoding="utf-8")
    print(f"params.yaml composed from {CONFIG_DIR}/{CONFIG_NAME}.yaml" + (f" with {' '.join(overrides)}" if overrides else ""))


if __name__ == "__main__":
    main()
