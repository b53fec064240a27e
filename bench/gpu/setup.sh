# Sourced by bench/gpu/run.sh and bench/gpu/tails.sh on the GPU machine: offline environment, output teed to
# $OUT/log.txt, the carried wheels installed beside the image's PyTorch, the data and base model of .gpu unpacked,
# and `step NAME COMMAND...`, which times a command into $OUT/timings.txt.
set -u
T0=$(date +%s)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false DVC_NO_ANALYTICS=1
exec > >(tee -a "$OUT/log.txt") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 3
export PYTHONPATH=$PWD/src:/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; lscpu | grep 'Model name'
python3 -c "import torch, transformers, sentence_transformers, datasets, dvclive, pytrec_eval; print('versions', torch.__version__, transformers.__version__, sentence_transformers.__version__, datasets.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')" || exit 4
tar -xJf .gpu/data.tar.xz && python3 bench/gpu/rebuild_fp32.py .gpu/minilm16 .gpu/minilm || exit 5
step() { local name=$1; shift; local s=$(date +%s%N); "$@"; local rc=$?; local e=$(date +%s%N); echo "TIMING $name rc=$rc $(( (e - s) / 1000000 )) ms" | tee -a "$OUT/timings.txt"; return $rc; }
