"""The comparison table of finished runs: `python sweep/collect.py --help` for its options. The
pipeline (gather, cells, tables, markdown, plots) is sweep/report/; this command is sweep/report/cli.py."""

import sys

from sweep.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
