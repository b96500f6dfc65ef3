"""Chained by the auditor's sitecustomize: load the proof suite's fault knobs (all off by default)."""

import proof_faults  # noqa: F401
