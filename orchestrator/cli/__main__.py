"""``python -m orchestrator.cli``: the same as the ``upscale`` command."""

from __future__ import annotations

import sys

from orchestrator.cli.main import main

sys.exit(main())
