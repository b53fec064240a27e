"""ingest: copy the raw dataset (params: data.source) into data/raw, where DVC versions it by hash."""

import argparse
import shutil
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.errors import InputError
from embedtune.io import atomic_directory
from embedtune.runtime import log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    source = Path(get(load_params(), "data.source"))
    if not source.is_dir():
        raise InputError("dataset directory not found (set data.source in params.yaml or conf/data/)", path=source)
    with atomic_directory(args.output) as staging:
        for item in sorted(source.rglob("*")):
            if item.is_file():
                target = staging / item.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(item, target)
    log.info("copied %s -> %s", source, args.output)


if __name__ == "__main__":
    run_stage(main)
