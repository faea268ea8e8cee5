#!/usr/bin/env bash
# The GPU check: everything synccp needs measured on a CUDA GPU, in one run of at most ~8 minutes
# on one H100/H200, written to docs/gpu.md (machine, versions, commands, medians, exit codes).
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --dry-run  # on any CPU: every stage, small, without CUDA
#
# Stages (each under its own time limit, so one slow stage cannot eat the others' time):
#   1. the CUDA tests (pytest -m cuda: bf16, channels_last, SyncBN under a 1-process nccl torchrun,
#      masks exactly zero after bf16 steps, exact resume, streamed batches into the GPU)
#   2. bench_throughput: BYOL ResNet-18 width 64, 32x32, batch 512, dense vs SyncCP, bf16, MFU;
#      and ResNet-50 at 224 px (ImageNet stem), batch 128
#   3. bench_sparsity: mask update + metrics share of training time
#   4. bench_loader: streaming JPEG decode (+ augmentation) into the GPU, 2/8/14 workers, and the
#      resident memory for folders of 1k vs 20k images
#   5. bench_cost_gpu: 2:4 semi-structured kernels vs the cost model
#   6. a 10-epoch CIFAR-10-shaped BYOL ResNet-18 SyncCP run through the CLI (batch 512, the ramp over
#      epochs 1 -> 7, a checkpoint per epoch): seconds per epoch
# Nothing is installed: python3 must have torch; numpy, safetensors, tqdm, Pillow and pytest are
# checked first (matplotlib is optional). synccp is used from src/ (PYTHONPATH).
# Environment: PYTHON (default python3), GPU_CHECK_OUT (report path, default docs/gpu.md),
# GPU_CHECK_WORK (scratch, default a temp dir). When $OUT is set (the device tool) the report and
# the logs are copied there.
set -uo pipefail
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
PY=${PYTHON:-python3}
REPORT=${GPU_CHECK_OUT:-docs/gpu.md}
WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
LOGS=$WORK/logs
mkdir -p "$LOGS"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 SYNCCP_CACHE="$WORK/cache"
: >"$LOGS/stages.tsv"

# all stages together (the device tool stops a command at 600 s; the report needs a few more)
BUDGET=${GPU_CHECK_BUDGET_S:-$( ((DRY)) && echo 1800 || echo 470)}
stage() {  # stage NAME LIMIT_S COMMAND...: run, log, record name/rc/seconds/command
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS left=$((BUDGET - SECONDS))
  if ((left < 15)); then
    echo "== $name: skipped, the ${BUDGET}s budget is spent"
    printf '%s\t%s\t%s\t%s\n' "$name" "skipped" 0 "$*" >>"$LOGS/stages.tsv"
    return
  fi
  ((limit > left)) && limit=$left
  echo "== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" >"$LOGS/$name.txt" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$*" >>"$LOGS/stages.tsv"
  tail -n 4 "$LOGS/$name.txt"
  echo "   -> exit $rc in $((SECONDS - start))s"
}

if ! $PY -c "import torch, numpy, safetensors, tqdm, PIL, pytest" 2>"$LOGS/imports.txt"; then
  echo "gpu_check: a required package is missing for $PY (torch numpy safetensors tqdm Pillow pytest):" >&2
  cat "$LOGS/imports.txt" >&2
  exit 2
fi
if [[ $DRY == 0 ]] && ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch.cuda.is_available() is False; use --dry-run on a machine without a GPU" >&2
  exit 2
fi

if [[ $DRY == 1 ]]; then
  DEV=cpu
  stage cuda_tests 600 env SYNCCP_TEST_DEVICE=cpu OMP_NUM_THREADS=1 $PY -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py
  stage throughput_cifar 300 $PY benchmarks/bench_throughput.py --device cpu --width 8 --size 32 --batch 16 --steps 1 --repeats 2
  stage throughput_r50_224 300 $PY benchmarks/bench_throughput.py --device cpu --backbone resnet50 --stem imagenet --width 4 --size 64 --batch 8 --steps 1 --repeats 2
  stage sparsity_share 300 $PY benchmarks/bench_sparsity.py --device cpu --models resnet18 --width 8 --batch 8 --repeats 1
  stage loader 300 $PY benchmarks/bench_loader.py --device cpu --dir "$WORK/loader" --images 96 --batch 16 --workers 1 2 --batches 2 --repeats 2 --memory 200 --memory-batches 3
  stage cost_gpu 60 bash -c "$PY benchmarks/bench_cost_gpu.py --device cpu; test \$? -eq 2"  # CUDA only: must refuse clearly
  stage make_cifar 120 $PY benchmarks/make_cifar_like.py "$WORK/cifar" --train 1024 --test 256
  RUN_LIMIT=300
  RUN_SETS=(--set data.subset=128 --set model.width=4 --set train.batch_size=16 --set train.epochs=2 --set train.log_every=2
            --set method.proj_hidden_dim=64 --set method.pred_hidden_dim=64 --set sparsity.update_every=2
            --set sparsity.start_epoch=0.5 --set sparsity.end_epoch=1.5 --set train.device='"cpu"')
else
  DEV=cuda
  stage cuda_tests 120 $PY -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py
  stage throughput_cifar 60 $PY benchmarks/bench_throughput.py --device cuda --width 64 --size 32 --batch 512 --precision bf16 --steps 10 --repeats 5
  stage throughput_r50_224 60 $PY benchmarks/bench_throughput.py --device cuda --backbone resnet50 --stem imagenet --width 64 --size 224 --batch 128 --precision bf16 --steps 5 --repeats 3
  stage sparsity_share 45 $PY benchmarks/bench_sparsity.py --device cuda --models resnet18 --width 64 --batch 256 --repeats 5
  stage loader 90 $PY benchmarks/bench_loader.py --device cuda --dir "$WORK/loader" --images 1500 --batch 128 --workers 2 8 14 --batches 3 --repeats 3 --memory 1000 20000 --memory-batches 10
  stage cost_gpu 60 $PY benchmarks/bench_cost_gpu.py --device cuda --backbone resnet18 --width 64 --image-size 32 --batch 256 --out "$LOGS/cost_gpu.json"
  stage make_cifar 30 $PY benchmarks/make_cifar_like.py "$WORK/cifar"
  RUN_LIMIT=120
  RUN_SETS=(--set train.epochs=10 --set train.batch_size=512 --set train.log_every=10 --set sparsity.start_epoch=1 --set sparsity.end_epoch=7
            --set train.device='"cuda"')
fi
stage cifar_10_epochs $RUN_LIMIT $PY -m synccp pretrain --config configs/cifar10_byol_r18_synccp.toml \
  --set data.root="\"$WORK/cifar\"" --set train.progress=false --set train.warmup_epochs=1 "${RUN_SETS[@]}" --out "$WORK/cifar_run" --no-eval

$PY benchmarks/gpu_report.py "$LOGS" --run "$WORK/cifar_run" --out "$REPORT" $([[ $DRY == 1 ]] && echo --dry-run)
echo "report: $REPORT (logs in $LOGS)"
if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
  cp "$REPORT" "$OUT/gpu.md"
  tar czf "$OUT/gpu_check_logs.tar.gz" -C "$WORK" logs
fi
failed=$(awk -F'\t' '$2 != "0" {print $1}' "$LOGS/stages.tsv" | tr '\n' ' ')
if [[ -n "$failed" ]]; then
  echo "gpu_check: stages not passed: $failed(see $REPORT)" >&2
  exit 1
fi
