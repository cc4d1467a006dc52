"""The typed readers' fuzz properties (tests/test_format_fuzz.py) with a large budget, run by hand.

    python benchmarks/fuzz_formats.py [EXAMPLES]     # default 5000 examples per property

Prints pytest's summary: every malformed input must end in the reader's one error.
"""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

if __name__ == "__main__":
    examples = sys.argv[1] if len(sys.argv) > 1 else "5000"
    test = Path(__file__).resolve().parents[1] / "tests" / "test_format_fuzz.py"
    env = {**os.environ, "FCM_FUZZ_EXAMPLES": examples}
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)], env=env))
