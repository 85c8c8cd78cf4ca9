"""``python -m tuneforge.cli``: the same as the ``tuneforge`` command."""

from tuneforge.cli import main

raise SystemExit(main())
