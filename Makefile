# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv and install the project into it first (once).
# torch: a CPU build is installed first so stable-baselines3 does not pull a CUDA one.
# GPU users: install your CUDA torch into .venv first (or set TORCH_SPEC), then run make.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# where pip finds a CPU build of it: empty = pip's configured index (this project's machines
# serve the CPU wheel); elsewhere TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
BIN := $(VENV)/bin
# setup.py compiles these with mypyc (keep the two lists in step); editing one reinstalls
# (recompiles) on the next make
COMPILED_SRC := $(addprefix prfaas_gym/,simulator.py link.py decode.py prefix_cache.py estimate.py featurizer.py profile.py contract.py request.py block_hashes.py actions.py coerce.py episode.py)

.PHONY: demo test lint bench install clean

$(BIN)/prfaas: pyproject.toml setup.py $(COMPILED_SRC)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# a plain-Python install (PRFAAS_PURE_PYTHON=1 pip install -e .) removed the extensions and
# left the stamp fresh: compile them again unless plain Python is asked for now
install: $(BIN)/prfaas
	@if [ -z "$$PRFAAS_PURE_PYTHON" ] || [ "$$PRFAAS_PURE_PYTHON" = 0 ]; then \
	  ls prfaas_gym/simulator.*.so >/dev/null 2>&1 || { \
	    echo "no compiled modules (a plain-Python install?): compiling them"; \
	    $(BIN)/pip install -q -e '.[dev]'; }; fi

demo: install
	$(BIN)/prfaas compare --scenario bursty-fluctuating \
	  --policies local-only,remote-all,prfaas-threshold,prfaas-dual,conductor,least-loaded,random \
	  --seeds 3 --requests 2000 --out results/demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/bench_simulator.py
	$(BIN)/python benchmarks/bench_env.py
	@if command -v valgrind >/dev/null; then $(BIN)/python benchmarks/bench_env_instructions.py; \
	  else echo "valgrind not installed: skipping benchmarks/bench_env_instructions.py"; fi

clean:
	rm -rf $(VENV) results *.egg-info build prfaas_gym/*.so *__mypyc*.so
