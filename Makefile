# The two commands: `make pipeline` and `make test`. Both build .venv when it is missing.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
PORT ?= 8000

.PHONY: help install moto nannyml pipeline quick test test-fast test-avx2 test-slow lint export lab serve bench check-reports docs plots exps

$(STAMP): setup.py settings.ini constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24" setuptools wheel
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	-git rev-parse --git-dir >/dev/null 2>&1 && $(VENV)/bin/nbdev_install_hooks
	touch $@

install: $(STAMP)  ## virtual environment with the package, the pipeline and the dev tools

# moto's S3 server for the DVC round-trip tests, in its own venv: installing moto[server] beside
# dvc[s3] sends pip into minutes of backtracking over botocore; alone it takes about 30 s.
MOTO_SERVER := .venv-moto/bin/moto_server
$(MOTO_SERVER): constraints-moto.txt
	test -x .venv-moto/bin/python || python3 -m venv .venv-moto
	.venv-moto/bin/python -m pip install --quiet -c constraints-moto.txt "moto[server]==5.2.5"
	touch $@

moto: $(MOTO_SERVER)  ## moto_server (local S3) in .venv-moto

# NannyML, to check the batch report's estimated performance against its CBPE (tests/test_cbpe_nannyml.py), in its own
# venv: it pulls lightgbm, xgboost, plotly and cloud clients the project does not need.
NANNYML := .venv-nannyml/.installed
$(NANNYML): constraints-nannyml.txt
	test -x .venv-nannyml/bin/python || python3 -m venv .venv-nannyml
	.venv-nannyml/bin/python -m pip install --quiet -c constraints-nannyml.txt "nannyml==0.13.1" "statsmodels==0.15.0"
	touch $@

nannyml: $(NANNYML)  ## NannyML (CBPE) in .venv-nannyml

pipeline: install  ## run every DVC stage that is out of date
	dvc repro --quiet

quick: install  ## a first look, nothing to fetch (25 s here): every stage on a 3,000-row sample in a temporary folder, its model card in quick/05a_report.html
	mkdir -p quick
	census-pinned papermill -k python3 --cwd nbs --log-level WARNING --no-progress-bar nbs/05a_report.ipynb quick/05a_report.ipynb
	python -c "import nbformat; from census_income.pipeline import render_html, strip_run_metadata; \
	  nb = nbformat.read('quick/05a_report.ipynb', 4); strip_run_metadata(nb); nbformat.write(nb, 'quick/05a_report.ipynb'); \
	  print('open', render_html('quick/05a_report.ipynb'))"  # as a stage's report: no log lines

# Tests in tiers (docs/guide.md: "Tests"). The fast tier (the editing loop, about 80 s on 2 cores here; a minute is the
# target): unit tests, every stage's function on a sample, and every notebook at its quick defaults (nbval, a real
# kernel each), two at a time; test-avx2 runs it again as a CPU without AVX-512 does. `make test` adds the tests that
# need several processes or a database, then those that need a full `dvc repro` in a scratch copy (one repro for the
# session, shared by both workers) with the slow one; `make test-slow` starts the dyno from a venv of requirements.txt alone.
FAST := not slow and not pipeline and not integration
PARALLEL := -n 2 --dist loadfile --nbval-lax

test-fast: install  ## unit tests, stage functions on samples, notebooks at quick defaults (about 80 s)
	pytest $(PARALLEL) -m "$(FAST)" tests nbs

test-avx2: install  ## the fast tier as a CPU with AVX2 and no AVX-512 runs it, pins off (census_income.cpu: the emulation)
	census-pinned --as-avx2-cpu pytest $(PARALLEL) -m "$(FAST)" tests nbs

# `make test` runs its tiers whatever the ones before gave (one failure never hides another tier's), then names the
# tiers that failed and fails if any did. The pipeline tests and the slow one share a run on both cores: one `dvc repro`
# serves them all (tests/conftest.py's `pipeline_repo`), while the other core runs the queued experiments.
test: install moto nannyml  ## the whole test suite, every tier (tools/system-deps installs Chromium and PostgreSQL if missing)
	bash tools/system-deps
	failed=""; \
	pytest $(PARALLEL) -m "not slow and not pipeline" tests nbs || failed="$$failed unit+integration"; \
	pytest -n 2 --dist loadfile --no-loadscope-reorder -m "pipeline or slow" tests || failed="$$failed pipeline+slow"; \
	if [ -n "$$failed" ]; then echo "make test: failed tiers:$$failed (each tier's failures are listed above it)"; exit 1; fi; \
	echo "make test: every tier passed"

test-slow: install moto  ## the slow suite (minutes)
	pytest -m slow

docs: install  ## the chapters: every notebook run at its quick defaults, with its code, as pages in _docs/ (index: _docs/index.html)
	python tools/build_docs.py --out _docs

lint: install
	ruff check census_income tests benchmarks tools api_requests.py testkit.py nbs/conftest.py nbs/kernel_forks.py

export: install  ## notebooks → package, and strip notebook outputs
	nbdev_export && nbdev_clean

lab: install  ## JupyterLab on nbs/ with the project's kernel, on the pipeline's CPU kernels (census_income.cpu)
	census-pinned jupyter lab --notebook-dir=nbs

serve: install  ## the API on $(PORT), building the model first if it is missing
	test -f $${CENSUS_MODEL_DIR:-model}/manifest.json || dvc repro
	eval "exec uvicorn census_income.api:app --host 127.0.0.1 --port $(PORT) $$(sed -n 's/^web: .*exec uvicorn .* --port [^ ]* //p' Procfile)"  # the Procfile's flags, their one home

bench: install  ## the quick benchmarks: prediction speed and quality over 3 seeds (after `make pipeline`)
	python benchmarks/bench_predict.py
	python benchmarks/quality_seeds.py

check-reports: install  ## open every HTML report in headless Chromium (needs Debian's chromium)
	python benchmarks/check_reports.py

plots: install  ## dvc_plots/index.html: `dvc plots show` with the project's template (Vega from tools/dvc-plots/, no network)
	dvc plots show -o dvc_plots

exps: install  ## the experiments beside the workspace: only the params and headline metrics that differ, no file hashes
	dvc exp show --md --only-changed --drop 'Created|State|Executor|.*/.*'

help:  ## every target and what it does
	@awk -F':.*## ' '/^[a-z0-9-]+:.*## /{printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
