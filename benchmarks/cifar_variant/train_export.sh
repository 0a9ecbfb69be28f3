#!/usr/bin/env bash
# CIFAR-10 int8-exact variant (exact_stem + shared_proj_bn + exact_tail), seed S: FP teacher, II-KD
# w2a2/w4a4 students (the repro recipe), exports. Usage: [STEP=12] benchmarks/cifar_variant/train_export.sh S [OUT]
# (~25 min per seed on 2 idle cores; BENCHMARKS.md "Export: int8-exact variant").
set -e
cd "$(dirname "$0")/../.."
: "${ROLEKD_CIFAR10_TAR:?set ROLEKD_CIFAR10_TAR to the CIFAR-10 JPEG archive}"
export TF_CPP_MIN_LOG_LEVEL=3
S=${1:-0}; O=${2:-runs/cifar_variant}/s$S
V="--set int8.stem=true --set int8.shared_proj_bn=true --set int8.tail=true"
date
.venv/bin/python train.py --config configs/repro_cifar10_cpu.yaml --set seed=$S --set distill.kd=none $V --out $O/teacher --quiet --overwrite
for B in 2 4; do
  date
  # 4-bit student: stem kernel on integers −10…10 stored ×12, so its integer bias keeps all 15
  # thresholds (int8.stem_step; STEP=1 reproduces the runs of 2026-12-02 07:37–08:48)
  X=""; [ "$B" -ge 3 ] && X="--set int8.stem_step=${STEP:-12}"
  .venv/bin/python train.py --config configs/repro_cifar10_cpu.yaml --set seed=$S $V $X --set train.optimizer=adam --set train.lr=0.001 \
    --set train.weight_decay=1e-5 --set "train.lr_milestones=[0.3,0.6,0.8]" --set model.w_bits=$B --set model.a_bits=$B \
    --init $O/teacher --teacher $O/teacher --kd ii --out $O/w${B}a${B} --quiet --overwrite
done
for r in teacher w2a2 w4a4; do date; .venv/bin/python -m rolekd_tf.export $O/$r; done
date
