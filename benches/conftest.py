"""Lets the pytest-benchmark files import the script modules beside them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
