from . import connector  # noqa: F401
