"""Ed25519 signatures over a skill's canonical manifest, and the trust policy that checks them.

A public key is written ``ed25519:BASE64`` (the raw 32 bytes). ``shopfloor.sig`` holds the key,
the signature and the signed manifest, so a refusal can say exactly which file changed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shopfloor.config import Settings
from shopfloor.errors import SkillFormatError, SkillSignatureError
from shopfloor.skills._manifest import SIGNATURE_FILE, Manifest, build_manifest
from shopfloor.skills._skill import Skill, load_skill

__all__ = [
    "BUILTIN_PUBLIC_KEY_FILE",
    "KeyPair",
    "SignatureInfo",
    "TrustPolicy",
    "fingerprint",
    "generate_key",
    "open_skill",
    "sign_payload",
    "sign_skill",
    "verify_payload",
    "verify_skill",
]

logger = logging.getLogger("shopfloor.skills")
_SIG_FORMAT = "shopfloor-skill-signature/1"
BUILTIN_PUBLIC_KEY_FILE = Path(__file__).parent / "builtin" / "shopfloor.pub"


@dataclass(frozen=True, kw_only=True)
class KeyPair:
    name: str
    private_path: Path
    public_path: Path
    public_key: str


@dataclass(frozen=True, kw_only=True)
class SignatureInfo:
    key: str
    digest: str


def _public_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode()


def fingerprint(public_key: str) -> str:
    """A short, stable name for a key in messages: the first 16 hex digits of its sha256."""
    return hashlib.sha256(public_key.encode()).hexdigest()[:16]


def _parse_public(text: str) -> Ed25519PublicKey:
    token = text.strip().split()[0] if text.strip() else ""
    if not token.startswith("ed25519:"):
        raise SkillSignatureError(f"not an Ed25519 public key (expected ed25519:BASE64): {token[:60]!r}")
    try:
        return Ed25519PublicKey.from_public_bytes(
            base64.b64decode(token.removeprefix("ed25519:"), validate=True)
        )
    except ValueError as exc:
        raise SkillSignatureError(f"malformed Ed25519 public key {token[:60]!r}: {exc}") from exc


def generate_key(name: str, keys_dir: Path) -> KeyPair:
    """Write NAME.key (PKCS#8 PEM, mode 0600) and NAME.pub under ``keys_dir``; never overwrite."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_path, public_path = keys_dir / f"{name}.key", keys_dir / f"{name}.pub"
    if private_path.exists() or public_path.exists():
        raise SkillSignatureError(f"{private_path}: a key named {name!r} already exists; choose another name")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created with 0600 from the start: no window in which another user could read it.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = _public_text(key.public_key())
    public_path.write_text(f"{public} {name}\n")
    return KeyPair(name=name, private_path=private_path, public_path=public_path, public_key=public)


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise SkillSignatureError(f"{path}: cannot read the private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SkillSignatureError(f"{path}: not an Ed25519 private key")
    return key


def sign_skill(skill_dir: Path | str, private_key: Path) -> SignatureInfo:
    """Sign the skill as it is on disk; writes ``shopfloor.sig`` into the skill directory."""
    skill = load_skill(skill_dir, strict=False)
    if skill.manifest.unsigned:
        raise SkillSignatureError(
            f"{skill.path}: empty directories cannot be signed ({', '.join(skill.manifest.unsigned)}); "
            "remove them or put a file in each"
        )
    key = _load_private(private_key)
    payload = skill.manifest.canonical()
    doc = {
        "format": _SIG_FORMAT,
        "key": _public_text(key.public_key()),
        "signature": base64.b64encode(key.sign(payload)).decode(),
        "manifest": skill.manifest.to_json(),
    }
    (skill.path / SIGNATURE_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return SignatureInfo(key=_public_text(key.public_key()), digest=skill.digest)


def sign_payload(payload: bytes, private_key: Path) -> tuple[str, str]:
    """Sign ``payload`` (canonical bytes of a document other than a skill, e.g. an agent release) with
    the key at ``private_key``: (``ed25519:BASE64`` public key, base64 signature)."""
    key = _load_private(private_key)
    return _public_text(key.public_key()), base64.b64encode(key.sign(payload)).decode()


def verify_payload(payload: bytes, *, key: str, signature: str, policy: TrustPolicy, what: str) -> str:
    """Check ``signature`` of ``payload`` by ``key`` and that ``policy`` trusts the key; returns the
    normalised key. ``what`` names the signed thing in the error (``release calculator@1.0``)."""
    public = _parse_public(key)
    try:
        public.verify(base64.b64decode(signature, validate=True), payload)
    except (InvalidSignature, ValueError) as exc:
        raise SkillSignatureError(
            f"{what}: the signature does not match the signed content (key {fingerprint(key)})"
        ) from exc
    normalised = _public_text(public)
    if normalised not in policy.trusted_keys:
        raise SkillSignatureError(
            f"{what} is signed by an unknown key {normalised} (fingerprint {fingerprint(normalised)}); "
            "add it to trust.trusted_keys in config.toml if you trust its owner"
        )
    return normalised


@dataclass(frozen=True, kw_only=True)
class TrustPolicy:
    """Which keys are trusted, whether a skill must be signed, which loader mode to use."""

    trusted_keys: frozenset[str]
    require_signed: bool = True
    strict: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> TrustPolicy:
        """The shipped Shopfloor key, ``trust.trusted_keys`` (keys or .pub files), this machine's keys."""
        keys = {_normalise(BUILTIN_PUBLIC_KEY_FILE.read_text())}
        for entry in settings.trust.trusted_keys:
            text = entry if entry.strip().startswith("ed25519:") else _read_key_file(Path(entry).expanduser())
            keys.add(_normalise(text))
        for pub in sorted((settings.home / "keys").glob("*.pub")):
            keys.add(_normalise(pub.read_text()))
        return cls(
            trusted_keys=frozenset(keys),
            require_signed=settings.trust.require_signed,
            strict=settings.trust.strict_skills,
        )


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise SkillSignatureError(f"trust.trusted_keys: cannot read public key file {path}: {exc}") from exc


def _normalise(text: str) -> str:
    return _public_text(_parse_public(text))


def _read_signature(path: Path) -> tuple[str, bytes, Manifest]:
    try:
        doc: Any = json.loads(path.read_text())
        if doc.get("format") != _SIG_FORMAT:
            raise ValueError(f"format is not {_SIG_FORMAT}")
        return doc["key"], base64.b64decode(doc["signature"]), Manifest.from_json(doc["manifest"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SkillSignatureError(f"{path}: malformed signature file ({exc}); sign the skill again") from exc


def verify_skill(skill: Skill, policy: TrustPolicy) -> SignatureInfo | None:
    """Check the skill's signature under ``policy``; None when unsigned and the policy allows it."""
    try:
        return _verify(skill, policy)
    except SkillSignatureError as exc:
        if policy.require_signed:
            raise
        logger.warning("skill %s: %s (allowed: trust.require_signed is off)", skill.name, exc)
        return None


def _verify(skill: Skill, policy: TrustPolicy) -> SignatureInfo:
    path = skill.path / SIGNATURE_FILE
    if not path.is_file():
        raise SkillSignatureError(
            f"skill {skill.name!r} ({skill.path}) is not signed: "
            f"sign it with `shopfloor skill sign {skill.path}`"
        )
    key_text, signature, signed = _read_signature(path)
    public = _parse_public(key_text)
    try:
        public.verify(signature, signed.canonical())
    except InvalidSignature as exc:
        raise SkillSignatureError(f"{path}: the signature does not match the manifest it signs") from exc
    changes = signed.diff(skill.manifest)
    if changes:
        raise SkillSignatureError(
            f"skill {skill.name!r} ({skill.path}) changed since it was signed "
            f"by key {fingerprint(key_text)}: " + "; ".join(changes)
        )
    key = _public_text(public)
    if key not in policy.trusted_keys:
        raise SkillSignatureError(
            f"skill {skill.name!r} is signed by an unknown key {key} (fingerprint {fingerprint(key)}); "
            "add it to trust.trusted_keys in config.toml if you trust its owner"
        )
    return SignatureInfo(key=key, digest=skill.digest)


def open_skill(skill_dir: Path | str, policy: TrustPolicy) -> Skill:
    """Load in the policy's mode and verify: the one way to get a skill that is allowed to run."""
    try:
        skill = load_skill(skill_dir, strict=policy.strict)
    except SkillFormatError:
        # A signed skill that no longer loads was probably changed: say what changed, not just what broke.
        sig = Path(skill_dir).resolve() / SIGNATURE_FILE
        if policy.require_signed and sig.is_file():
            _, _, signed = _read_signature(sig)
            changes = signed.diff(build_manifest(sig.parent, signed.front_matter))
            if changes:
                raise SkillSignatureError(
                    f"skill at {sig.parent} changed since it was signed: " + "; ".join(changes)
                ) from None
        raise
    verify_skill(skill, policy)
    return skill
