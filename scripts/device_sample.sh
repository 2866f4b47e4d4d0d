#!/usr/bin/env bash
# Issue 10's sample-efficiency stage on a lent GPU (the `device` tool): budget fmnist_sample_gpu, the twelve runs
# (ConViT and DeiT, 5% and 100% of Fashion-MNIST, seeds 0-2) in parallel processes on the one GPU, resumable.
#
# Here, once:   echo /.fmnist/ >> .git/info/exclude; mkdir -p .fmnist
#               cp /usr/share/datasets/fashion-mnist/*.gz .fmnist/       (30 MB: the device machine lacks the package)
# There:        run(command="bash scripts/device_sample.sh", carry=[".fmnist"], timeout_s=540)
# Back here:    the histories under $OUT (runs.tgz) and the results JSON; unpack runs.tgz into the repository root
#               and run `python -m experiments.make_assets --budget fmnist_sample_gpu --results-only`.
# The device's python3 already has torch, timm, safetensors, scikit-image and matplotlib (device/KINDS.md).
set -euo pipefail
export PETL_FASHION_MNIST="$PWD/.fmnist" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/device_out}" PY="${PYTHON:-python3}"
mkdir -p "$OUT"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# Stop before the command's limit so that what finished comes back; a second call resumes the rest.
timeout "${TRAIN_S:-480}" "$PY" -m experiments.make_assets --budget fmnist_sample_gpu --jobs "${JOBS:-12}" \
    2>&1 | tee "$OUT/log.txt" || true
"$PY" -m experiments.make_assets --budget fmnist_sample_gpu --results-only 2>&1 | tail -2 | tee -a "$OUT/log.txt"
mkdir -p runs/fmnist_sample_gpu
tar czf "$OUT/runs.tgz" --exclude=checkpoint --exclude=snapshots --exclude=model.safetensors runs/fmnist_sample_gpu
cp assets/results/fmnist_sample_gpu/*.json "$OUT/"
