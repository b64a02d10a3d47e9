import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the DL1 test helper (tests/dl1.py)
