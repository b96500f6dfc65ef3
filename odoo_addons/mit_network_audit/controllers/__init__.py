from . import forensic  # noqa: F401
