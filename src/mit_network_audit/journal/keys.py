"""The checkpoint signing key: Ed25519, kept outside the database.

Formats are those of C2SP signed notes (and Go's ``golang.org/x/mod/sumdb/note``), so any note
tool can check our checkpoints:

* signer key (the 0600 file, or ``$MNA_SIGNING_KEY``):  ``PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>``
* verifier key (public, travels with every export):    ``<name>+<id>+<base64(0x01 || public key)>``
* key id = first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key), printed as 8 hex digits.

``$MNA_SIGNING_KEY`` may also hold a bare base64 32-byte seed (its name then comes from
``$MNA_SIGNING_KEY_NAME`` or defaults to ``mit-network-audit/<hostname>``).  The database never
sees the private key: checkpoints are signed in the process that runs the command.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import stat
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01
ENV_KEY = "MNA_SIGNING_KEY"
ENV_KEY_NAME = "MNA_SIGNING_KEY_NAME"
ENV_KEY_FILE = "MNA_SIGNING_KEY_FILE"
ENV_PUBLIC_KEY = "MNA_PUBLIC_KEY"


class KeyProblem(ValueError):
    """A key that is malformed, unsafe (readable by others) or missing."""


def default_key_path() -> str:
    env = os.environ.get(ENV_KEY_FILE)
    if env:
        return env
    import platformdirs

    return os.path.join(platformdirs.user_config_dir("mit-network-audit"), "signing.key")


def default_key_name() -> str:
    return os.environ.get(ENV_KEY_NAME) or f"mit-network-audit/{socket.gethostname()}"


def check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name) or not name.isprintable():
        raise KeyProblem(f"key name {name!r}: must be non-empty, printable, without spaces or '+'")
    return name


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()[:4]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass(frozen=True)
class Verifier:
    name: str
    public: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public)

    @property
    def vkey(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_ED25519]) + self.public)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
            return True
        except (InvalidSignature, ValueError):
            return False

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        parts = vkey.strip().split("+", 2)  # base64 may itself contain "+"
        if len(parts) != 3:
            raise KeyProblem("a verifier key looks like NAME+8HEXID+BASE64")
        name, hex_id, b64 = parts
        check_name(name)
        try:
            raw = _unb64(b64)
        except ValueError as exc:
            raise KeyProblem(f"verifier key: bad base64: {exc}") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise KeyProblem("verifier key: not an Ed25519 key (0x01 || 32 bytes)")
        verifier = cls(name, raw[1:])
        if verifier.key_id.hex() != hex_id.lower():
            raise KeyProblem("verifier key: key id does not match the name and public key")
        return verifier


@dataclass(frozen=True)
class SigningKey:
    name: str
    seed: bytes

    @property
    def _private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public(self) -> bytes:
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.public)

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def encode(self) -> str:
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_ED25519]) + self.seed)}"

    @classmethod
    def generate(cls, name: str | None = None) -> SigningKey:
        return cls(check_name(name or default_key_name()), os.urandom(32))

    @classmethod
    def parse(cls, text: str, *, name: str | None = None) -> SigningKey:
        text = text.strip()
        if text.startswith("PRIVATE+KEY+"):
            parts = text.split("+", 4)
            if len(parts) != 5:
                raise KeyProblem("a signing key looks like PRIVATE+KEY+NAME+8HEXID+BASE64")
            _, _, key_name, hex_id, b64 = parts
            try:
                raw = _unb64(b64)
            except ValueError as exc:
                raise KeyProblem(f"signing key: bad base64: {exc}") from None
            if len(raw) != 33 or raw[0] != ALG_ED25519:
                raise KeyProblem("signing key: not an Ed25519 seed (0x01 || 32 bytes)")
            key = cls(check_name(key_name), raw[1:])
            if key.key_id.hex() != hex_id.lower():
                raise KeyProblem("signing key: key id does not match the name and key")
            return key
        try:
            seed = _unb64(text)
        except ValueError:
            raise KeyProblem("signing key: neither PRIVATE+KEY+... nor a base64 32-byte seed") from None
        if len(seed) != 32:
            raise KeyProblem(f"signing key: a seed is 32 bytes, got {len(seed)}")
        return cls(check_name(name or default_key_name()), seed)


def init_key(path: str | None = None, *, name: str | None = None, force: bool = False) -> tuple[SigningKey, str]:
    """Create a new key file (mode 0600, refusing to overwrite unless ``force``) and ``<path>.pub``."""
    path = path or default_key_path()
    key = SigningKey.generate(name)
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyProblem(f"{path} exists: refusing to replace a signing key (use --force to rotate it)") from None
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(key.encode() + "\n")
    with open(path + ".pub", "w") as fh:
        fh.write(key.verifier.vkey + "\n")
    return key, path


def load_signing_key(path: str | None = None, *, required: bool = False) -> SigningKey | None:
    """``$MNA_SIGNING_KEY`` first, else the key file (refused if group/other can read it)."""
    env = os.environ.get(ENV_KEY)
    if env:
        return SigningKey.parse(env)
    path = path or default_key_path()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if required:
            raise KeyProblem(f"no signing key at {path}: run `mit-network-audit keys init` "
                            f"(or set ${ENV_KEY})") from None
        return None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise KeyProblem(f"{path} is readable by group/others (mode {stat.S_IMODE(st.st_mode):o}): "
                        f"chmod 600 {path}")
    with open(path) as fh:
        return SigningKey.parse(fh.read())


def load_verifier(text_or_path: str | None = None, *, key_path: str | None = None) -> Verifier | None:
    """The trusted public key: an explicit vkey (or a file holding one), ``$MNA_PUBLIC_KEY``, else the
    public half of the signing key (or its ``.pub`` file).  None when nothing is configured."""
    source = text_or_path or os.environ.get(ENV_PUBLIC_KEY)
    if source:
        if os.path.exists(source):
            with open(source) as fh:
                source = fh.read()
        return Verifier.parse(source)
    try:
        key = load_signing_key(key_path)
    except KeyProblem:
        key = None
    if key is not None:
        return key.verifier
    pub = (key_path or default_key_path()) + ".pub"
    if os.path.exists(pub):
        with open(pub) as fh:
            return Verifier.parse(fh.read())
    return None
