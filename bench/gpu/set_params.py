"""Edit params.yaml in place: ``set_params.py train.precision=fp32 seed=3`` (values parsed as YAML)."""

import sys

import yaml

params = yaml.safe_load(open("params.yaml"))
for assignment in sys.argv[1:]:
    key, _, value = assignment.partition("=")
    *parents, last = key.split(".")
    node = params
    for name in parents:
        node = node[name]
    node[last] = yaml.safe_load(value)
yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
print("params:", " ".join(sys.argv[1:]))
