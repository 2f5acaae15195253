"""CI mode for the Python tests and benchmark smokes: under CI, a test that cannot run what it is
about (no root, no BPF, a missing peer) fails; elsewhere it skips with the reason. One reading of
the CI variable for every Python test (tests/support/ci_mode.h and scripts/common.sh are the same
rule for C++ and shell): true, 1, yes or on, in any case.

Import it from a file in tests/<dir>/ or bench/ with the repository's tests/support on sys.path.
"""

from __future__ import annotations

import os

TRUTHY = ("true", "1", "yes", "on")


def is_truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in TRUTHY


def in_ci() -> bool:
    return is_truthy(os.environ.get("CI"))
