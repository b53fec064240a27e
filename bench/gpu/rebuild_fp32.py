"""On the GPU machine: rebuild the base model directory with fp32 weights from the fp16 copy that travelled."""

import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("model16.safetensors"))
weights = load_file(src / "model16.safetensors")
save_file({k: (v.to(torch.float32) if v.is_floating_point() else v) for k, v in weights.items()},
          dst / "model.safetensors", metadata={"format": "pt"})
print("rebuilt", dst, sum(v.numel() for v in weights.values()), "params")
