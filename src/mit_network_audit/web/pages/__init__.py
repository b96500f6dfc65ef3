"""Pages mounted through the role-checked registry (registry.py); importing this package registers them.

Each module registers one router factory with the least role its routes need.  A later page
(settings, forensic bodies) adds a module here and one import below — nothing else changes.
"""

from . import bundle, forensic, groups, proof, settings  # noqa: F401  (registration side effect)
