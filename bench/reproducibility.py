"""Are two lakes the same? One digest per lake table (and per model directory's weights), compared side by side.

Run the demo twice, into two lakes, under two machines' worth of CPU settings (the pin should make them equal),
then compare:

    SAE_LAKE_ROOT=/tmp/lake-a make demo
    SAE_LAKE_ROOT=/tmp/lake-b DAGSTER_HOME=/tmp/dh-b ATEN_CPU_CAPABILITY=avx512 OMP_NUM_THREADS=1 \
        .venv/bin/sae-lake demo
    python bench/reproducibility.py /tmp/lake-a /tmp/lake-b

Digests as ``assets.lakehouse.digest`` makes them: rows in a canonical order, every column but the measured wall
times. Prints one line per table, and exits 1 when any differs.
"""

import argparse
import sys
from pathlib import Path

from assets.lakehouse.digest import lake_digests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lakes", nargs="+", type=Path, help="one lake to list, or two to compare")
    args = parser.parse_args()
    found = [lake_digests(lake) for lake in args.lakes]
    names = sorted(set().union(*found))
    differ = 0
    for name in names:
        values = [d.get(name, "-") for d in found]
        same = len(set(values)) == 1
        differ += not same
        print(f"{'same' if same else 'DIFFERS':8s} {name:28s} " + "  ".join(values))
    if len(found) > 1:
        print(f"\n{len(names) - differ} of {len(names)} tables identical")
    return 1 if differ and len(found) > 1 else 0


if __name__ == "__main__":
    sys.exit(main())
