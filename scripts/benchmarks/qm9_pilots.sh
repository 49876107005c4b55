#!/usr/bin/env bash
# Short pilots that chose the architecture of the shipped QM9 models (docs/benchmarks.md,
# "QM9 pilots"): each trains on the full QM9 training split (DFT geometries, made by
# `python -m scripts.qm9_recipe data`) for a fixed number of optimizer steps with a cosine
# schedule over those steps, one thread, eager, and is validated once on the 10,000
# validation molecules. Wall time per step is in each run's log: the pick is the best
# validation error for the time a full run can spend.
#   bash scripts/benchmarks/qm9_pilots.sh outputs/qm9_full/data outputs/qm9_pilots [NAME...]
set -euo pipefail
D=${1:?data folder}; OUT=${2:?output folder}; shift 2
COMMON="experiment=qm9 data=extxyz +data.use_cache=false data.batch_size=32
  data.eval_batch_size=128 targets=[energy,homo,lumo,gap,dipole_moment]
  module.loss.weights.energy=1000 +module.loss.weights.homo=2
  +module.loss.weights.dipole_moment=10 scheduler=cosine module.compile=false
  data.path=$D/qm9_trainval.extxyz data.split_file=$D/trainval_split.json
  data.test_path=null trainer.max_epochs=1000 callbacks.early_stopping.patience=1000"
declare -A PILOT=(
  [c32_l1_n2]="model.num_channels=32 model.l_max=1 model.num_layers=2 model.radial_hidden=32"
  [c64_l1_n2]="model.num_channels=64 model.l_max=1 model.num_layers=2 model.radial_hidden=64"
  [c32_l2_n2]="model.num_channels=32 model.l_max=2 model.num_layers=2 model.radial_hidden=32"
  [c32_l1_n3]="model.num_channels=32 model.l_max=1 model.num_layers=3 model.radial_hidden=32"
  [c32_l1_n2_lr2e-3]="model.num_channels=32 model.l_max=1 model.num_layers=2 model.radial_hidden=32 optimizer.lr=0.002"
)
STEPS=${STEPS:-1500}
NAMES=("$@"); [ ${#NAMES[@]} -eq 0 ] && NAMES=(c32_l1_n2 c64_l1_n2 c32_l2_n2 c32_l1_n3)
for name in "${NAMES[@]}"; do
  run=$OUT/$name-s$STEPS
  [ -f "$run/model.pt" ] && continue
  mkdir -p "$run"
  start=$(date +%s)
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 molsym train $COMMON ${PILOT[$name]} trainer.max_steps=$STEPS \
    scheduler.total_steps=$STEPS +trainer.val_check_interval=$STEPS ++trainer.check_val_every_n_epoch=null \
    refit_energy_shift=false hydra.run.dir="$run" > "$run/train.log" 2>&1
  echo "$name steps=$STEPS wall_s=$(( $(date +%s) - start ))" | tee -a "$OUT/pilots.txt"
done
