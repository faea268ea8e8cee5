"""`python -m synccp` (also what `torchrun -m synccp` runs)."""

from synccp.cli import main

raise SystemExit(main())
