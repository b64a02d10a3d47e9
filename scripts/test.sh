#!/usr/bin/env bash
# The test command (`make test`, `.ci/run`). Extra pytest arguments pass through: PYTEST_ARGS.
set -uo pipefail
VENV="${VENV:-.venv}"
"$VENV/bin/python" -m pytest -ra ${PYTEST_ARGS:-} "$@"
rc=$?
# pytest's 5 means no test ran: that is a failure for us, never a silent pass.
exit $rc
