#!/bin/bash
# On a lent GPU machine (after bench/gpu/prepare.sh here; carry .gpu): the real stage scripts on CUDA, timed.
#  1. embed_base, baseline, train, embed_finetuned, evaluate with default params (precision auto: bf16 on CUDA)
#     on the mined data of the last CPU run, then the same with encode and train in fp32;
#  2. a dev-split screen (bench/gpu/screen.py): default vs 500 synthetic documents vs 3 epochs, seeds 2-9, fp32,
#     JOBS at a time, none started after SCREEN_UNTIL seconds.
# SCREEN_ONLY=1 skips part 1. Everything it prints is in $OUT/log.txt; timings in $OUT/timings.txt, metrics in
# $OUT/results.json and $OUT/screen.tsv.
source bench/gpu/setup.sh
python3 bench/gpu/set_params.py model.base=$PWD/.gpu/minilm encode.precision=auto train.precision=auto
Q=data/prepared/queries.jsonl; C=data/prepared/corpus.jsonl; T=data/split/test.tsv
variant() {  # $1: a name for the outputs; precision is set in params.yaml before
  local v=$1
  step embed_base_$v python3 stages/embed.py $C data/embeddings/base_$v metrics/embed_base_$v.json || return 1
  step baseline_$v python3 stages/baseline.py data/embeddings/base_$v $Q $T metrics/baseline_$v.json reports/base_$v.csv || return 1
  step train_$v python3 stages/train.py data/mined/train.jsonl data/prepared models/ft_$v metrics/train_$v || return 1
  step embed_ft_$v python3 stages/embed.py --model models/ft_$v $C data/embeddings/ft_$v metrics/embed_ft_$v.json || return 1
  step evaluate_$v python3 stages/evaluate.py --model models/ft_$v --embeddings data/embeddings/ft_$v --queries $Q \
    --test-qrels $T --baseline-per-query reports/base_$v.csv --metrics metrics/finetuned_$v.json \
    --comparison metrics/comparison_$v.json --reports reports_$v || return 1
}
if [ -z "${SCREEN_ONLY:-}" ]; then
  variant auto || { echo "PRIMARY FAILED"; exit 6; }
  python3 bench/gpu/set_params.py encode.precision=fp32 train.precision=fp32
  variant fp32 || echo "FP32 VARIANT FAILED"
  python3 - <<'PY'
import glob, json, os
found = sorted(glob.glob("metrics/baseline_*.json") + glob.glob("metrics/finetuned_*.json") + glob.glob("metrics/train_*/metrics.json"))
results = {path: json.load(open(path)) for path in found}
json.dump(results, open(os.environ["OUT"] + "/results.json", "w"), indent=1)
print(json.dumps(results)[:3000])
PY
else
  python3 bench/gpu/set_params.py encode.precision=fp32 train.precision=fp32
  [ -d data/embeddings/base_fp32 ] || python3 stages/embed.py $C data/embeddings/base_fp32 metrics/embed_base_fp32.json || exit 7
fi
rm -rf exp
SPECS=""; for s in 2 3 4 5 6 7 8 9; do
  SPECS="$SPECS gdef-s$s:split.dev_fraction=0.15,seed=$s gsyn500-s$s:split.dev_fraction=0.15,seed=$s,synthetic.enabled=true,synthetic.max_documents=500 gep3-s$s:split.dev_fraction=0.15,seed=$s,train.epochs=3"
done
python3 bench/gpu/screen.py $((T0 + ${SCREEN_UNTIL:-420})) ${JOBS:-6} data/embeddings/base_fp32 $SPECS
echo "TOTAL $(( $(date +%s) - T0 )) s"
