"""``python -m tests._controlplane``: run the control plane until Ctrl-C (same as ``.server``)."""

from .server import main

raise SystemExit(main())
