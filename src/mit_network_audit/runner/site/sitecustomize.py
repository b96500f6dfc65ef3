"""Put first on PYTHONPATH by `mit-network-audit run`: start the auditor, then chain to the
user's own sitecustomize (if any) so we never shadow it."""

import os
import sys


def _boot():
    try:
        from mit_network_audit.runner.boot import start_from_env
    except ModuleNotFoundError as exc:
        if exc.name != "mit_network_audit":
            raise
        # A child Python other than the one `run` started (``bash -c python3 ...``, a shebang that
        # names another interpreter) does not have the package: load it from where this file lives,
        # by location, without touching sys.path, so nothing of the program's own is shadowed.  With
        # a SQLite journal the boot path needs the standard library only.
        import importlib.util

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        spec = importlib.util.spec_from_file_location(
            "mit_network_audit", os.path.join(root, "__init__.py"), submodule_search_locations=[root]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["mit_network_audit"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop("mit_network_audit", None)
            raise
        from mit_network_audit.runner.boot import start_from_env
    start_from_env()


try:
    _boot()
except Exception as _exc:  # the audited program must start whatever happens to us
    sys.stderr.write(
        f"mit-network-audit: auditing disabled in this process ({sys.executable}, Python "
        f"{sys.version_info[0]}.{sys.version_info[1]}): {type(_exc).__name__}: {_exc} — install "
        "mit-network-audit (with [postgres] for a PostgreSQL journal) into this interpreter\n"
    )


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
