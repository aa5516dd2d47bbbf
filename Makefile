# Dockyard: the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test unit integration engine image clean

$(BIN)/dockyard: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

engine:
	@docker info >/dev/null 2>&1 || { \
	  echo "error: no Docker engine answers. Install and start one, e.g.:"; \
	  echo "  apt-get install -y docker.io && (dockerd >/tmp/dockerd.log 2>&1 &)"; \
	  echo "or point DOCKER_HOST at a running engine."; exit 1; }

image: engine
	@docker image inspect dockyard-test:latest >/dev/null 2>&1 || ./scripts/build-test-image.sh

## make run: a one-machine cluster (server + local agent) on 127.0.0.1:8080
run: $(BIN)/dockyard engine
	$(BIN)/dockyard up

## make test: the whole suite, against the real Docker engine and a throw-away PostgreSQL
## (scripts/start-postgres.sh starts one on 127.0.0.1:55432 unless DOCKYARD_TEST_POSTGRES is set)
test: $(BIN)/dockyard image
	DOCKYARD_TEST_POSTGRES=$${DOCKYARD_TEST_POSTGRES:-$$(./scripts/start-postgres.sh)} \
	  $(BIN)/python -m pytest -q -p no:cacheprovider

unit: $(BIN)/dockyard
	DOCKYARD_TEST_POSTGRES=$${DOCKYARD_TEST_POSTGRES:-$$(./scripts/start-postgres.sh)} \
	  $(BIN)/python -m pytest -q tests/unit tests/api

integration: $(BIN)/dockyard image
	DOCKYARD_TEST_POSTGRES=$${DOCKYARD_TEST_POSTGRES:-$$(./scripts/start-postgres.sh)} \
	  $(BIN)/python -m pytest -q tests/integration

clean:
	rm -rf $(VENV) .dockyard *.egg-info
