#!/usr/bin/env bash
# Build here, on the CPU machine, the two git-ignored paths benchmarks/gpu/batch.sh carries to the GPU one:
#   .whl/               wheels the GPU image lacks: hydra-core, omegaconf (+ antlr4), polars (+ its runtime),
#                       liger-kernel, ~54 MiB
#   .carry/data.tar.xz  the files the batch's loaders read, 3.1 MiB xz-compressed (gzip took 4.1: too close to the
#                       64 MiB a call sends): ml-1m/ml-1m.txt (9 MiB), S3-Rec's Beauty.txt and its item attributes
#                       (the repro_s3_* steps), BERT4Rec's beauty.txt (the repro_beauty* steps)
# The versions are the ones the batch was tested with; the GPU image has torch, lightning, torchmetrics, rich,
# pyarrow, tensorboard and matplotlib, and wandb is not needed (logger=csv or none).
#   bash benchmarks/gpu/prepare.sh            (data from $RECSYS_ATTN_DATA_DIR, else ../shared/data)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
data=${RECSYS_ATTN_DATA_DIR:-../shared/data}
[ -d .whl ] || python3 ../shared/tools/device_wheels.py hydra-core==1.3.8 omegaconf==2.3.1 polars==2.1.0
# liger-kernel (0.9 MiB, issue 14's fused linear cross-entropy) alone: its dependencies (torch, triton) are on
# the image, and device_wheels would fetch torch's CUDA wheels (GiBs) with it
ls .whl/liger_kernel-*.whl >/dev/null 2>&1 ||
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl liger-kernel==0.8.5
rm -rf .carry && mkdir -p .carry
tar -cf - -C "$data" ml-1m/ml-1m.txt beauty-s3rec/Beauty.txt beauty-s3rec/Beauty_item2attributes.json \
    beauty/beauty.txt | xz -9e -T1 >.carry/data.tar.xz
du -sh .whl .carry
# what a `run` call sends: the working tree's tracked and untracked (not ignored) files plus the carried paths, 64 MiB
# at most; the kept runs (benchmarks/runs/) grow it by ~0.1-0.3 MiB a row
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | awk 'END {print $1}')
carried=$(du -cb .whl .carry | awk 'END {print $1}')
echo "a run call sends $(((tree + carried) >> 20)) MiB: working tree $((tree >> 20)), carried $((carried >> 20)) (limit 64)"
if [ $((tree + carried)) -ge $((63 << 20)) ]; then
    echo "error: within 1 MiB of the 64 MiB a call may send: move large untracked files out of the checkout" >&2
    exit 1
fi
