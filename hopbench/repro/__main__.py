"""``python -m hopbench.repro [DIR]``: write DIR/REPORT.md from the verdict.json files."""

from hopbench.repro import main

raise SystemExit(main())
