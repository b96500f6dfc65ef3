"""Put first on PYTHONPATH by `mit-network-audit run`: start the auditor, then chain to the
user's own sitecustomize (if any) so we never shadow it."""

import os
import sys

try:
    from mit_network_audit.runner.boot import start_from_env

    start_from_env()
except Exception as _exc:  # the audited program must start whatever happens to us
    sys.stderr.write(f"mit-network-audit: auditing disabled in this process: {type(_exc).__name__}: {_exc}\n")


def _chain_user_sitecustomize():
    here = os.path.dirname(os.path.abspath(__file__))
    this = sys.modules.pop("sitecustomize", None)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        import sitecustomize  # noqa: F401  (the user's, found further down the path)
    except ImportError:
        pass
    finally:
        sys.path[:] = saved
        if "sitecustomize" not in sys.modules and this is not None:
            sys.modules["sitecustomize"] = this


_chain_user_sitecustomize()
