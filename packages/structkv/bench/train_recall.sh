#!/usr/bin/env bash
# The exact commands of the training attempts for the tiny associative-recall Llama
# (see README, "Training attempts"). Each is checkpointed every --eval-every steps and resumes
# from OUT/ckpt.pt when re-run. Run from the repository root.
# The model used by bench/accuracy_vs_budget.py is attempt 10: run 6, then 10 (grows 6's 2 layers to 8);
# attempt 9 (4 layers) made bench/results/accuracy_vs_budget_4layer.*. Runs 6, 9 and 10 commit their model/.
set -euo pipefail
attempt="${1:-10}"
common=(--hidden 128 --heads 4 --intermediate 256 --n-keys 32 --n-values 32 --n-filler 32
  --weight-decay 0.01 --batch-size 32 --lengths 64,128,256 --min-pairs 8 --max-pairs 8
  --eval-every 250 --eval-len 256 --eval-samples 200 --threads 1)
run() { nice -n 10 uv run --locked python -m structkv.synthetic.train "$@"; }
case "$attempt" in
  1) run --out packages/structkv/bench/runs/recall --steps 6000 --curriculum-steps 2500 --max-pairs 16 --threads 1 ;;
  2) run --out packages/structkv/bench/runs/recall2 --steps 6000 --n-keys 32 --n-values 32 --n-filler 32 \
       --min-len 17 --max-len 256 --min-pairs 8 --max-pairs 8 --curriculum-start 1000 --curriculum-steps 3500 \
       --tokens-per-batch 8192 --batch-size 16 --eval-every 200 --threads 1 ;;
  3) run --out packages/structkv/bench/runs/recall3 --layers 4 --hidden 64 --heads 2 --kv-heads 1 --intermediate 192 \
       --lr 3e-3 --steps 2500 --n-keys 32 --n-values 32 --n-filler 32 --min-len 17 --max-len 256 --min-pairs 8 \
       --max-pairs 8 --curriculum-start 300 --curriculum-steps 1500 --tokens-per-batch 4096 --batch-size 16 \
       --eval-every 100 --eval-samples 100 --threads 1 ;;
  4) run --out packages/structkv/bench/runs/recall4 --layers 4 --hidden 64 --heads 2 --kv-heads 1 --intermediate 192 \
       --lr 3e-3 --weight-decay 0.1 --steps 10000 --n-keys 32 --n-values 32 --n-filler 32 --min-len 17 --max-len 256 \
       --min-pairs 8 --max-pairs 8 --adaptive --len-step 16 --tokens-per-batch 4096 --batch-size 16 \
       --eval-every 200 --eval-samples 100 --threads 1 ;;
  5) run --out packages/structkv/bench/runs/recall5 --layers 4 --kv-heads 2 --steps 6000 --lr 1e-3 --copy-steps 2000 "${common[@]}" ;;
  6) run --out packages/structkv/bench/runs/recall6 --layers 2 --kv-heads 2 --steps 6000 --lr 1e-3 --copy-steps 2000 "${common[@]}" ;;
  7) run --out packages/structkv/bench/runs/recall7 --layers 4 --kv-heads 2 --steps 6000 --lr 2e-3 --copy-steps 6000 "${common[@]}" ;;
  8) run --out packages/structkv/bench/runs/recall8 --layers 4 --kv-heads 4 --steps 6000 --lr 1e-3 --copy-steps 6000 --seed 1 "${common[@]}" ;;
  9) run --out packages/structkv/bench/runs/recall9 --layers 4 --kv-heads 2 --steps 1500 --lr 1e-3 --copy-steps 1000 \
       --init-from packages/structkv/bench/runs/recall6/model --layer-map 0,-,-,1 "${common[@]}" ;;
  10) run --out packages/structkv/bench/runs/recall10 --layers 8 --kv-heads 2 --steps 1500 --lr 1e-3 --copy-steps 1000 \
       --init-from packages/structkv/bench/runs/recall6/model --layer-map 0,-,-,-,-,-,-,1 "${common[@]}" --threads 2 ;;
  # two-hop fine-tune of attempt 10 (bench/miniature.py --run-twohop): stage 11 (stopped by hand after its
  # step-100 evaluation, whose weights it saves), then 12 from 11's weights
  11) nice -n 10 uv run --locked python packages/structkv/bench/finetune_twohop.py --out /tmp/twohop_stage1 \
       --lengths 64,128,192 --lr 1e-3 --steps 400 --eval-samples 25 ;;
  12) nice -n 10 uv run --locked python packages/structkv/bench/finetune_twohop.py --init /tmp/twohop_stage1 \
       --out packages/structkv/bench/runs/twohop --lengths 64,128 --lr 1e-3 --steps 400 --recall-every 4 \
       --eval-samples 25 ;;
  *) echo "attempt must be 1-12" >&2; exit 2 ;;
esac
