"""The long fuzzing run of the CSV and XML readers: the CI property tests with many more examples.

    python benchmarks/fuzz_readers.py [--examples 20000]

Runs tests/test_payt_csv_properties.py and tests/test_payt_xml_properties.py with PAYT_FUZZ_EXAMPLES set
(CI runs them with 100-300 examples per property). Any input that makes a reader raise anything but a clean
rejection fails the run, with the smallest such input hypothesis found.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000)
    args = parser.parse_args()
    env = {**os.environ, "PAYT_FUZZ_EXAMPLES": str(args.examples)}
    files = ["tests/test_payt_csv_properties.py", "tests/test_payt_xml_properties.py"]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "0", *files], cwd=REPO, env=env
    )
    print(f"{args.examples} examples per property, {time.monotonic() - started:.0f} s, exit {done.returncode}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
