from . import controllers, models
from .glue import post_load
from .hooks import post_init_hook, uninstall_hook

__all__ = ["controllers", "models", "post_init_hook", "post_load", "uninstall_hook"]
