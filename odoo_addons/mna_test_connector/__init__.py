from . import connector, controllers, models  # noqa: F401
