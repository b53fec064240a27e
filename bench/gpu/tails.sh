#!/bin/bash
# On a lent GPU machine (after bench/gpu/prepare.sh here; carry .gpu): tail views (encode.tail_tokens) measured.
#  1. the real embed and train stage scripts, timed, with default params (on 2026-11-30: encode.tail_tokens=256; SKIP_TIMING=1: skipped);
#  2. dev-split models trained by dvc.yaml's own split -> synthesize -> mine -> train commands (fp32), SEEDS at once;
#  3. each model's dev claims scored with documents read as heads only and with tail views of TAILS tokens.
# Output: $OUT/log.txt, $OUT/timings.txt, $OUT/screen.tsv, $OUT/tails.jsonl.
source bench/gpu/setup.sh
C=data/prepared/corpus.jsonl
python3 bench/gpu/set_params.py model.base=$PWD/.gpu/minilm
if [ -z "${SKIP_TIMING:-}" ]; then
  step embed_base_auto python3 stages/embed.py $C data/embeddings/base_auto metrics/embed_base_auto.json || exit 6
  cat data/embeddings/base_auto/meta.json metrics/embed_base_auto.json
  step train_auto python3 stages/train.py data/mined/train.jsonl data/prepared models/ft_auto metrics/train_auto || exit 7
fi
python3 bench/gpu/set_params.py encode.precision=fp32 train.precision=fp32 encode.tail_tokens=0
step embed_base_fp32 python3 stages/embed.py $C data/embeddings/base_fp32 metrics/embed_base_fp32.json || exit 8
rm -rf exp; SPECS=""; for s in ${SEEDS:-25 26 27 28 29 30 31 32 33 34 35}; do SPECS="$SPECS g-s$s:split.dev_fraction=0.15,seed=$s"; done
SCREEN_STAGES=split,synthesize,mine,train step screen python3 bench/gpu/screen.py $((T0 + ${SCREEN_UNTIL:-300})) ${JOBS:-11} data/embeddings/base_fp32 $SPECS
DIRS=$(for d in exp/*; do [ -d "$d/models/finetuned" ] && echo $d; done)
i=0; for d in $DIRS; do python3 bench/gpu/tail_eval.py ${TAILS:-0,64,128,192,256} $d & i=$((i+1)); [ $((i % ${EVAL_JOBS:-6})) -eq 0 ] && wait; done; wait
cat exp/*/tails.json > "$OUT/tails.jsonl"
echo "TOTAL $(( $(date +%s) - T0 )) s"
