"""The Odoo redaction policy: the package's default masking, plus Odoo's token-carrying routes.

Header and query values are never stored by the default policy already.  Odoo also puts secrets
in *path segments* that do not always look random enough for the entropy mask (portal and
signup tokens, ``/web/content/<id>-<unique>``, database names in ``/web/database/*``), so the
segment after each known token-bearing prefix is masked whatever it looks like.
"""

from __future__ import annotations

from mit_network_audit.interceptor.redaction import DefaultRedaction

# route prefix (as segments) -> index of the segment that carries a secret or personal value
TOKEN_ROUTES: dict[tuple[str, ...], int] = {
    ("web", "signup"): 2,
    ("web", "reset_password"): 2,
    ("mail", "view"): 2,
    ("mail", "unfollow"): 2,
    ("survey", "start"): 3,
    ("survey", "fill"): 3,
    ("my", "orders"): 2,
    ("my", "invoices"): 2,
    ("web", "content"): 2,
    ("web", "image"): 2,
    ("web", "database"): 2,
}
MASK = ":token"


def mask_odoo_path(path: str | None) -> str | None:
    if not path:
        return path
    parts = path.split("/")
    segs = parts[1:] if parts and parts[0] == "" else parts
    for prefix, index in TOKEN_ROUTES.items():
        if tuple(segs[: len(prefix)]) == prefix and len(segs) > index:
            segs[index] = MASK
    return ("/" if path.startswith("/") else "") + "/".join(segs)


class OdooRedaction(DefaultRedaction):
    def path(self, path):
        return super().path(mask_odoo_path(path))
