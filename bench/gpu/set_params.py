"""Edit params.yaml in place: ``set_params.py train.precision=fp32 seed=3`` (values parsed as YAML)."""

import sys
from pathlib import Path

import yaml

params = yaml.safe_load(Path("params.yaml").read_text())
for assignment in sys.argv[1:]:
    key, _, value = assignment.partition("=")
    *parents, last = key.split(".")
    node = params
    for name in parents:
        node = node[name]
    node[last] = yaml.safe_load(value)
Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
print("params:", " ".join(sys.argv[1:]))
