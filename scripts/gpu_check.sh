#!/usr/bin/env bash
# One prepared check of molsym on a CUDA machine (written for an H100 with torch preinstalled).
#
#   bash scripts/gpu_check.sh            # from the repository root
#
# Steps, each with its own time limit; a failing step is recorded and the next one still runs:
#   0. environment: GPU, torch/CUDA versions, which molsym dependencies import
#   1. the gpu-marked tests (pytest -m gpu) and the export tests
#   2. a short training run on cuda (about 90 s of training)
#   3. scripts/benchmarks/bench_model.py on cuda (when it has a --device option)
#   4. eager vs torch.compile energy+forces of the flagship (scripts/benchmarks/bench_compile.py)
#   5. molsym export of the trained model as an AOTInductor package for cuda
# Results go to $OUT/ when OUT is set (the device tool), else ./gpu_results/: a summary
# (summary.txt) and one log per step. Exit status: the number of failed steps.
# The whole run stays within GPU_CHECK_BUDGET seconds (default 540): a step gets at most the
# time left, and is skipped when less than 30 s are left.
#
# Missing packages (rdkit, ase, hydra-core, vesin, ...) are taken from a wheel folder .whl/ if
# present, installed with --no-deps into /tmp/site and put on PYTHONPATH. Fill it beforehand, on
# a machine with pip and network, for the device's Python (default 3.12):
#   bash scripts/gpu_check.sh --fetch-wheels [PYTHON_VERSION]
# Wheels of torch, triton and nvidia-* are never installed from .whl/ (they would replace the
# machine's CUDA build); neither is any package that already imports there.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 99

# Packages a bare CUDA+torch machine may lack (manylinux x86_64 or pure-Python wheels;
# antlr4-python3-runtime 4.9, needed by omegaconf, exists only as an sdist and is built here).
WHEELS=(rdkit ase hydra-core omegaconf vesin)
SDISTS=(antlr4-python3-runtime)
if [ "${1:-}" = "--fetch-wheels" ]; then
    pyver=${2:-3.12}
    py=${PYTHON:-python3}
    mkdir -p .whl
    # pin the versions installed here, when there are any, so the device runs what was tested
    pin() {
        local ver
        if ver=$("$py" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" \
            "$1" 2> /dev/null); then echo "$1==$ver"; else echo "$1"; fi
    }
    specs=()
    for name in "${WHEELS[@]}"; do specs+=("$(pin "$name")"); done
    "$py" -m pip download --no-deps --only-binary=:all: --python-version "$pyver" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d .whl "${specs[@]}" || exit 1
    for name in "${SDISTS[@]}"; do
        "$py" -m pip wheel --no-deps -w .whl "$(pin "$name")" || exit 1
    done
    du -sh .whl
    exit 0
fi
RESULTS=${OUT:-$ROOT/gpu_results}
mkdir -p "$RESULTS"
SUMMARY="$RESULTS/summary.txt"
: > "$SUMMARY"
PY=${PYTHON:-python3}
FAILED=0
DEADLINE=$(( $(date +%s) + ${GPU_CHECK_BUDGET:-540} ))
export PYTHONUNBUFFERED=1
export MOLSYM_CACHE_DIR=${MOLSYM_CACHE_DIR:-/tmp/molsym_cache}

say() { echo "$*" | tee -a "$SUMMARY"; }

# run_step NAME LIMIT_S CMD...: run with a time limit, log to $RESULTS/NAME.log, record status.
run_step() {
    local name=$1 limit=$2 rc start left
    shift 2
    start=$(date +%s)
    left=$(( DEADLINE - start - 5 ))
    if [ "$left" -lt 30 ]; then
        say "$name: SKIPPED (only ${left}s of GPU_CHECK_BUDGET left)"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "--- $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" > "$RESULTS/$name.log" 2>&1
    rc=$?
    tail -n 15 "$RESULTS/$name.log"
    if [ "$rc" -eq 0 ]; then
        say "$name: OK ($(( $(date +%s) - start )) s)"
    else
        [ "$rc" -eq 124 ] && say "$name: TIMED OUT after ${limit}s"
        say "$name: FAILED rc=$rc ($(( $(date +%s) - start )) s), log $RESULTS/$name.log"
        FAILED=$((FAILED + 1))
    fi
}

# --- 0. environment -----------------------------------------------------------------------
say "molsym gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
say "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
        | tee -a "$SUMMARY"
fi

SITE=/tmp/site
if compgen -G "$ROOT/.whl/*.whl" > /dev/null; then
    wheels=()
    for whl in "$ROOT"/.whl/*.whl; do
        dist=$(basename "$whl" | cut -d- -f1)
        case "${dist,,}" in
            torch | triton | nvidia_* | nvidia-*) continue ;;
        esac
        if "$PY" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" \
            "$dist" > /dev/null 2>&1; then
            continue
        fi
        wheels+=("$whl")
    done
    # one at a time: a wheel that does not fit this Python must not stop the others
    for whl in ${wheels[@]+"${wheels[@]}"}; do
        if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "$whl" > "$RESULTS/pip.log" 2>&1; then
            say "installed $(basename "$whl") into $SITE"
        else
            say "could not install $(basename "$whl"): $(tail -n 1 "$RESULTS/pip.log")"
        fi
    done
fi
export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"

"$PY" - <<'EOF' 2>&1 | tee -a "$SUMMARY"
import importlib
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
for mod in ["numpy", "ase", "rdkit", "vesin", "hydra", "omegaconf", "pytorch_lightning",
            "torch_geometric", "pandas", "molsym", "molsym.cli.main"]:
    try:
        m = importlib.import_module(mod)
        print(f"  ok      {mod} {getattr(m, '__version__', '')}")
    except Exception as exc:  # noqa: BLE001 - report every failure, keep going
        print(f"  MISSING {mod}: {type(exc).__name__}: {exc}")
EOF

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    say "no CUDA device visible to torch: nothing else to check"
    exit 1
fi

# molsym without its console script: the same entry point the `molsym` command calls.
MOLSYM=("$PY" -c "import sys; from molsym.cli.main import main; sys.exit(main(sys.argv[1:]))")

# --- 1. tests -----------------------------------------------------------------------------
run_step tests_gpu 120 "$PY" -m pytest -q -p no:cacheprovider --continue-on-collection-errors \
    -m gpu tests

# --- 2. short training on cuda (bundled rMD17 ethanol) ------------------------------------
TRAIN_DIR=/tmp/molsym_gpu_train
rm -rf "$TRAIN_DIR"
run_step train 150 "${MOLSYM[@]}" train \
    trainer=gpu 'trainer.max_time="00:00:01:00"' \
    hydra.run.dir="$TRAIN_DIR"
[ -f "$TRAIN_DIR/metrics.json" ] && cp "$TRAIN_DIR/metrics.json" "$RESULTS/train_metrics.json"

# --- 3. model benchmark on cuda -----------------------------------------------------------
BENCH_DATA=${MOLSYM_BENCH_DATA:-}
for cand in shared/data/rmd17/rmd17_aspirin_train_01.npz \
    ../shared/data/rmd17/rmd17_aspirin_train_01.npz \
    data/rmd17_ethanol/rmd17_ethanol_train_01.npz; do
    if [ -z "$BENCH_DATA" ] && [ -f "$cand" ]; then BENCH_DATA=$cand; fi
done
say "benchmark data: ${BENCH_DATA:-none found}"
if [ -f scripts/benchmarks/bench_model.py ] && "$PY" scripts/benchmarks/bench_model.py --help 2>&1 | grep -q -- --device
then
    run_step bench_model 90 "$PY" scripts/benchmarks/bench_model.py --device cuda --quick \
        --models molsym,molsym_invariant --data "$BENCH_DATA" --json "$RESULTS/bench_model.json"
else
    say "bench_model: scripts/benchmarks/bench_model.py has no --device option here, skipped"
fi

# --- 4. eager vs torch.compile ------------------------------------------------------------
run_step bench_compile 180 "$PY" scripts/benchmarks/bench_compile.py --device cuda --frames 32 \
    ${BENCH_DATA:+--data "$BENCH_DATA"} --out "$RESULTS/bench_compile.json"

# --- 5. export the trained model for cuda (AOTInductor) -----------------------------------
if [ -f "$TRAIN_DIR/model.pt" ]; then
    run_step export_aoti 150 "${MOLSYM[@]}" export --model "$TRAIN_DIR/model.pt" \
        -o /tmp/molsym_gpu_model.pt2 --format aoti --device cuda
    cp /tmp/molsym_gpu_model.pt2.json "$RESULTS/export_aoti.json" 2>/dev/null
else
    say "export_aoti: no trained model.pt, skipped"
fi

say "=== $FAILED step(s) failed; results in $RESULTS"
exit "$FAILED"
