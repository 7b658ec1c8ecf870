"""Signed release decisions: each is signed with its actor's SSH key, as git signs commits.

The signature is OpenSSH's SSHSIG format (PROTOCOL.sshsig in openssh-portable), made by
`ssh-keygen -Y sign`, so a key in ssh-agent or on a hardware token signs as well as a key
file, and an auditor can check any decision with OpenSSH alone:

    ssh-keygen -Y verify -f allowed_signers -I alice@example.com -n taxi-pipeline-release \\
        -s decision.sig < digest.txt

What is signed is the decision's digest, which covers every field and the digest of the
decision before it: a signature vouches for the decision and for its place in the chain.
Verifying reads the signature here (cryptography, no process per decision: a history of a
thousand decisions verifies in well under a second) and checks that the key that signed is
one the approvers file lists for the decision's actor.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import struct
import subprocess
from typing import Optional, Tuple

NAMESPACE = 'taxi-pipeline-release'
KEY_VARIABLE = 'TAXI_PIPELINE_SIGNING_KEY'
_MAGIC = b'SSHSIG'
_BEGIN, _END = '-----BEGIN SSH SIGNATURE-----', '-----END SSH SIGNATURE-----'


class BadSignature(ValueError):
    """A signature that does not verify, or one that no listed key made."""


class NoSigningKey(ValueError):
    """The acting user has no key to sign with (exit 2: nothing changed)."""


def signing_key(given: Optional[str] = None) -> str:
    """The key file to sign with: --signing-key, else $TAXI_PIPELINE_SIGNING_KEY (a private key, or a
    public key whose private half is in ssh-agent)."""
    path = given or os.environ.get(KEY_VARIABLE)
    if not path:
        raise NoSigningKey(f'every release decision is signed: pass --signing-key PATH or set {KEY_VARIABLE} '
                           '(your SSH private key, or its .pub with the key in ssh-agent)')
    if not os.path.exists(path):
        raise NoSigningKey(f'signing key {path} does not exist')
    return path


def sign(message: bytes, key_path: str) -> str:
    """An armored SSHSIG signature of `message` by the key at `key_path` (ssh-keygen -Y sign)."""
    try:
        done = subprocess.run(['ssh-keygen', '-q', '-Y', 'sign', '-n', NAMESPACE, '-f', key_path],
                              input=message, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise NoSigningKey('ssh-keygen (OpenSSH 8.1 or later) is needed to sign release decisions') from None
    if done.returncode != 0:
        why = done.stderr.decode(errors='replace').strip().splitlines()
        raise NoSigningKey(f'ssh-keygen could not sign with {key_path}: {why[-1] if why else "no reason given"}')
    return done.stdout.decode().strip()


def normalize_key(text: str) -> str:
    """'<type> <base64>' without the comment: how keys are compared."""
    parts = text.split()
    if len(parts) < 2:
        raise ValueError(f'not an SSH public key: {text[:40]!r}')
    return f'{parts[0]} {parts[1]}'


def fingerprint(public_key: str) -> str:
    """SHA256:... as `ssh-keygen -l` prints it."""
    blob = base64.b64decode(public_key.split()[1])
    return 'SHA256:' + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip('=')


def _strings(data: bytes, count: int) -> Tuple[list, bytes]:
    out = []
    for _ in range(count):
        if len(data) < 4:
            raise BadSignature('truncated signature')
        (length,) = struct.unpack('>I', data[:4])
        if len(data) < 4 + length:
            raise BadSignature('truncated signature')
        out.append(data[4:4 + length])
        data = data[4 + length:]
    return out, data


def _string(value: bytes) -> bytes:
    return struct.pack('>I', len(value)) + value


def signer(armored: str, message: bytes) -> str:
    """The public key ('<type> <base64>') that made `armored` over `message`; BadSignature if it does not
    verify. PROTOCOL.sshsig: the blob is MAGIC, version, key, namespace, reserved, hash, signature; what was
    signed is MAGIC, namespace, reserved, hash algorithm and H(message)."""
    text = armored.strip()
    if not (text.startswith(_BEGIN) and text.endswith(_END)):
        raise BadSignature('not an SSH signature')
    try:
        blob = base64.b64decode(''.join(text[len(_BEGIN):-len(_END)].split()), validate=True)
    except ValueError:
        raise BadSignature('not an SSH signature (bad base64)') from None
    if not blob.startswith(_MAGIC) or len(blob) < 10 or struct.unpack('>I', blob[6:10])[0] != 1:
        raise BadSignature('not an SSH signature (magic or version)')
    (public_blob, namespace, reserved, hash_name, signature), _ = _strings(blob[10:], 5)
    if namespace.decode(errors='replace') != NAMESPACE:
        raise BadSignature(f'signed for {namespace.decode(errors="replace")!r}, not {NAMESPACE!r}')
    hashes = {b'sha512': hashlib.sha512, b'sha256': hashlib.sha256}
    if hash_name not in hashes:
        raise BadSignature(f'unknown hash {hash_name!r}')
    signed = (_MAGIC + _string(namespace) + _string(reserved) + _string(hash_name)
              + _string(hashes[hash_name](message).digest()))
    (kind, raw), _ = _strings(signature, 2)
    key_type = _strings(public_blob, 1)[0][0].decode(errors='replace')
    public_key = f'{key_type} {base64.b64encode(public_blob).decode()}'
    _verify(public_key, kind.decode(errors='replace'), raw, signed)
    return public_key


@functools.lru_cache(maxsize=256)
def load_public_key(public_key: str):
    """The key object of '<type> <base64>'; ValueError if it is none."""
    from cryptography.hazmat.primitives import serialization
    try:
        return serialization.load_ssh_public_key(public_key.encode())
    except Exception as e:  # cryptography raises ValueError or UnsupportedAlgorithm
        raise ValueError(str(e) or 'unreadable key') from None


def _verify(public_key: str, kind: str, raw: bytes, signed: bytes) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
    key = load_public_key(public_key)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey) and kind == 'ssh-ed25519':
            key.verify(raw, signed)
        elif isinstance(key, rsa.RSAPublicKey) and kind in ('rsa-sha2-512', 'rsa-sha2-256'):
            key.verify(raw, signed, padding.PKCS1v15(), hashes.SHA512() if kind.endswith('512') else hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey) and kind.startswith('ecdsa-sha2-nistp'):
            (r, s), _ = _strings(raw, 2)
            curve_hash = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size]
            key.verify(utils.encode_dss_signature(int.from_bytes(r, 'big'), int.from_bytes(s, 'big')), signed,
                       ec.ECDSA(curve_hash))
        else:
            raise BadSignature(f'a {kind} signature from a {public_key.split()[0]} key is not supported')
    except InvalidSignature:
        raise BadSignature('the signature does not match the decision (it was changed after signing, or '
                           'signed for another)') from None
