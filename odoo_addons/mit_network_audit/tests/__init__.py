from . import test_audit  # noqa: F401
