import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the DL1 test helper (tests/dl1.py)


@pytest.fixture(scope="session")
def real_small():
    """60 toy events (seed 5), shared by the tests that need a few real images and the dataset's info."""
    from ganforge_astro.toy import iact_toy

    return iact_toy(num_samples=60, seed=5)
