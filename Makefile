# The commands people type. Every target sets up what it needs first (incrementally).
#   make run-all              execute the four chapter notebooks       (NOTEBOOKS=..., JOBS=N)
#   make book                 the chapter as one page, framework tabs -> build/book/index.html
#   make test                 every test suite, each in its env, plus lint and clean-notebook checks
#                             (installs Debian's chromium with apt-get for the browser tests;
#                             SKIP_BROWSER=1: no install, those tests skip)
#   make setup                build the envs under .venvs/              (FRAMEWORKS="pytorch jax")
#                             prints a line per env first: build, rebuild or up to date, and why
#                             (DRY_RUN=1: only that plan, nothing changed)
#   make release / grade      nbgrader student versions / autograde     (COURSE=dir, SUBMISSIONS=dir, JOBS=N)
#                             grade grades only new and changed submissions (FORCE=1: all again)
#   make collect              an LMS download into SUBMISSIONS/         (LMS=canvas ZIP=zip ROSTER=csv)
#   make override             an instructor's score for one test cell   (STUDENT= ASSIGNMENT= CELL=
#                             POINTS= NOTE="why"; CLEAR=1 removes it): row, page, exports at once
#   make export               grades for Canvas or Moodle               (LMS=canvas ROSTER=csv)
#   make lab                  the student's JupyterLab on copies in build/lab/, no grading menus
#                             (LAB_ARGS="--no-browser --port 8899", LAB_FRESH=1: fresh copies)
#   make bench                benchmarks -> build/bench.json: by default the quick four (run-all,
#                             overhead, shapes, book; ~7 min on 2 cores); the whole-class, set-up
#                             and apply-init ones when named (BENCH=grading,cluster; BENCH=all)
#   make test-colab           the notebooks and claim tests on Colab's versions (not in `make test`)
#   make lint                 ruff over the code and the notebooks' code cells
#   make clean-notebooks      strip outputs from the notebooks before a commit (nbstripout)
#   make help                 this list

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
FRAMEWORKS ?= pytorch tensorflow mxnet jax
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
NOTEBOOKS ?=
TOOLS := .venvs/tools/bin

.PHONY: setup run-all book test lint clean-notebooks help

help:
	@sed -n '/^#/!q; s/^# \{0,1\}//p' Makefile

# DRY_RUN=1 shows set-up's plan and changes nothing; every other target needs what it builds.
DRY_RUN ?=
ifneq ($(DRY_RUN),)
ifneq ($(filter-out setup help,$(MAKECMDGOALS)),)
$(error DRY_RUN=1 is for `make setup` alone (the other targets need the envs it builds))
endif
endif
setup:
	@$(PYTHON) ci/setup_envs.py $(if $(DRY_RUN),--dry-run) $(FRAMEWORKS)

run-all: setup
	@$(TOOLS)/python ci/run_all.py --jobs $(JOBS) $(NOTEBOOKS)

# Reuses run-all's executed notebooks when their code and env are unchanged (ci/book.py).
# BOOK_BUILD=dir builds into another folder than build/ (the book's tests do).
BOOK_BUILD ?=
book: setup
	@$(TOOLS)/python ci/book.py --jobs $(JOBS) $(if $(BOOK_BUILD),--build "$(BOOK_BUILD)")

test: setup
	@bash ci/install_browser.sh
	@$(TOOLS)/python ci/test_all.py $(FRAMEWORKS)

lint: setup
	@$(TOOLS)/ruff check d2l_shim grader ci tests notebooks book

# Strip outputs and execution counts from the committed notebooks (nbstripout does the work).
# The sample class's submissions are test data, broken on purpose: they stay as handed in.
clean-notebooks: setup
	@$(TOOLS)/nbstripout $$(git ls-files --cached --others --exclude-standard -- '*.ipynb' ':!tests/grading/*_class/*')

# --- graded exercises (nbgrader): see exercises/README.md ---
SUBMISSIONS ?= submitted
# The course: nbgrader_config.py and source/, solutions and hidden tests included. exercises/
# is public; run a class from a private copy with COURSE=path (exercises/README.md).
COURSE ?= exercises
STUDENTS ?=
FORCE ?=
SCHEDULER ?=
LMS ?=
ROSTER ?= roster.csv
ZIP ?=
BENCH ?=
LAB_ARGS ?=
LAB_FRESH ?=
.PHONY: release collect grade override export lab bench
release: setup
	@$(TOOLS)/python -m grader release --course "$(COURSE)"

grade: setup
	@$(TOOLS)/python -m grader grade --course "$(COURSE)" --submissions $(SUBMISSIONS) --jobs $(JOBS) \
	  $(if $(STUDENTS),--students "$(STUDENTS)") $(if $(SCHEDULER),--scheduler $(SCHEDULER)) \
	  $(if $(UNSANDBOXED),--unsandboxed) $(if $(FORCE),--force)

collect: setup
	@$(TOOLS)/python -m grader collect --course "$(COURSE)" --lms "$(LMS)" $(if $(ZIP),--zip "$(ZIP)") \
	  --roster "$(ROSTER)" --submissions "$(SUBMISSIONS)"

STUDENT ?=
ASSIGNMENT ?=
CELL ?=
POINTS ?=
NOTE ?=
CLEAR ?=
# The note is free text: it reaches the command through the environment, so that no quote,
# `$` or backtick in it is read by make or the shell.
override: export GRADER_NOTE := $(value NOTE)
override: setup
	@$(TOOLS)/python -m grader override --course "$(COURSE)" --student "$(STUDENT)" \
	  --assignment "$(ASSIGNMENT)" --cell "$(CELL)" --points "$(POINTS)" --note "$$GRADER_NOTE" \
	  $(if $(CLEAR),--clear)

export: setup
	@$(TOOLS)/python -m grader export --course "$(COURSE)" --lms "$(LMS)" --roster "$(ROSTER)"

lab: setup
	@LAB_FRESH=$(LAB_FRESH) $(TOOLS)/python ci/lab.py $(LAB_ARGS)

bench: setup
	@PYTHON=$(PYTHON) $(TOOLS)/python ci/bench.py $(if $(BENCH),--only $(BENCH))

# Colab's stack (Python 3.13, torch 2.11 CUDA build: several GB) in .venvs/colab, a stand-in
# google.colab, each set-up cell run for real; see ci/colab.py. Not part of `make test`.
.PHONY: test-colab
test-colab: setup
	@$(TOOLS)/python ci/colab.py
