"""``python -m ovbench``: the same as the ``ovbench`` command."""
from ovbench.cli import main

raise SystemExit(main())
