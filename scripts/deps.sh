#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: the compiler tool
# chain is assumed; PyTorch and NumPy for the reference tests (run with
# /usr/bin/python3), OpenBLAS so that the PyTorch peer in bench/ runs at its best,
# pkg-config and g++ for the install test.
set -euo pipefail
need=()
/usr/bin/python3 -c 'import torch, numpy' 2>/dev/null || need+=(python3-torch python3-numpy)
dpkg -s libopenblas0 >/dev/null 2>&1 || need+=(libopenblas0)
# tests/test_install.py: pkg-config reads the installed moe.pc, g++ builds a C++ user
command -v pkg-config >/dev/null || need+=(pkg-config)  # the pkgconf package on newer Debian
command -v g++ >/dev/null || need+=(g++)
# expert-parallel training over MPI (src/dist, tests/test_dist.py): mpicc found makes the build use it
command -v mpirun >/dev/null || need+=(openmpi-bin)
dpkg -s libopenmpi-dev >/dev/null 2>&1 || need+=(libopenmpi-dev)
# libmoe reads compressed training data (.gz, .xz, .zst) through zlib, liblzma and libzstd
for p in zlib1g-dev liblzma-dev libzstd-dev; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
# tests/test_report.py: headless Chromium renders moe report / moe route --html pages
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
# moe serve: libmicrohttpd (only the moe binary links it); tests/test_serve.py: the openai client
dpkg -s libmicrohttpd-dev >/dev/null 2>&1 || need+=(libmicrohttpd-dev)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
/usr/bin/python3 -c 'import tokenizers' 2>/dev/null || timeout 300 /usr/bin/python3 -m pip install -q --user --break-system-packages tokenizers >/dev/null 2>&1 || true  # optional: tests/test_tokenizer_hf.py skips without it
/usr/bin/python3 -c 'import transformers' 2>/dev/null || timeout 300 /usr/bin/python3 -m pip install -q --user --break-system-packages 'transformers==4.46.3' >/dev/null 2>&1 || true  # optional: tests/test_convert_torch.py (and test_infer_torch.py) compare with its models; the version checked with torch 1.13
/usr/bin/python3 -c 'import torch; print("torch", torch.__version__)'
# llama.cpp through its Python binding, for tests/test_llama_interop.py (SKIPPED without it outside CI, FAIL under
# CI): pinned; pip builds llama.cpp from source (several minutes), so run this before the tests, not inside them.
/usr/bin/python3 -c 'import llama_cpp' 2>/dev/null || /usr/bin/python3 -m pip install -q --user --break-system-packages 'llama-cpp-python==0.3.16'
/usr/bin/python3 -c 'import openai' 2>/dev/null || timeout 300 /usr/bin/python3 -m pip install -q --user --break-system-packages openai  # tests/test_serve.py (SKIPPED without it outside CI, FAIL under CI)
