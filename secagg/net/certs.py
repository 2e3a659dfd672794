"""A development certificate authority for the network runtime (``secagg certs``).

Layout of a certificate directory::

    ca.crt  ca.key                 the CA (key only where certificates are issued)
    server.crt  server.key         the server (SAN = its DNS name or IP address)
    client-<ID>.crt  client-<ID>.key   one per client (SAN URI urn:secagg:client:<ID>)

Every private key is ECDSA P-256, PKCS#8 PEM, created with mode ``0600`` and
never overwritten.  The client id is bound to the certificate by exactly one URI
subject alternative name ``urn:secagg:client:<id>``
(``protocols/wire/transport.md`` §1.1); :func:`client_id_from_certificate` is
the one place that reads it back.

Security notes
--------------
This is a *development* CA: one directory holds the CA key.  In a deployment the
CA key stays offline and each device receives only ``ca.crt`` and its own pair.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from secagg.errors import LocalProtocolError, ParameterError, RemoteProtocolError

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CLIENT_URI_PREFIX",
    "SERVER_CERT",
    "SERVER_KEY",
    "client_files",
    "client_id_from_certificate",
    "init_ca",
    "issue_client",
    "issue_server",
]

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"
CLIENT_URI_PREFIX = "urn:secagg:client:"
_ID_RE = re.compile(r"[1-9][0-9]{0,9}")
MAX_CLIENT_ID = 2**32 - 1
DEFAULT_DAYS = 365


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ParameterError(f"{path} exists; refusing to overwrite a private key") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, data)
    finally:
        os.close(fd)


def _write_public(path: Path, cert: x509.Certificate) -> None:
    if path.exists():
        raise ParameterError(f"{path} exists; refusing to overwrite it")
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
    except FileNotFoundError:
        raise ParameterError(f"no CA in {directory} (run `secagg certs init` first)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ParameterError("the CA key is not an EC key")
    return cert, key


def _validity(
    days: int, not_before: _dt.datetime | None, not_after: _dt.datetime | None
) -> tuple[_dt.datetime, _dt.datetime]:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ParameterError("days must be a positive integer")
    start = not_before or (_now() - _dt.timedelta(minutes=5))
    end = not_after or (start + _dt.timedelta(days=days))
    if end <= start:
        raise ParameterError("not_after must be later than not_before")
    return start, end


def init_ca(
    directory: str | os.PathLike[str],
    *,
    name: str = "secagg development CA",
    days: int = 3650,
) -> Path:
    """Create ``directory`` (mode 0700 if new) with a self-signed CA.

    Returns the path of ``ca.crt``.

    Raises
    ------
    ParameterError
        If a CA key already exists there.
    """
    d = Path(directory)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (d / CA_KEY).exists() or (d / CA_CERT).exists():
        raise ParameterError(f"{d} already holds a CA; refusing to overwrite it")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start, end = _validity(days, None, None)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(d / CA_KEY, key)
    _write_public(d / CA_CERT, cert)
    return d / CA_CERT


def _issue(
    d: Path,
    stem: str,
    common_name: str,
    san: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    days: int,
    not_before: _dt.datetime | None,
    not_after: _dt.datetime | None,
) -> tuple[Path, Path]:
    ca_cert, ca_key = _load_ca(d)
    crt, keyp = d / f"{stem}.crt", d / f"{stem}.key"
    if crt.exists() or keyp.exists():
        raise ParameterError(f"{crt} or {keyp} exists; refusing to overwrite")
    start, end = _validity(days, not_before, not_after)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(keyp, key)
    _write_public(crt, cert)
    return crt, keyp


def _check_id(client_id: int) -> None:
    if (
        isinstance(client_id, bool)
        or not isinstance(client_id, int)
        or not 1 <= client_id <= MAX_CLIENT_ID
    ):
        raise ParameterError("client ids are integers in [1, 2^32)")


def client_files(directory: str | os.PathLike[str], client_id: int) -> tuple[Path, Path]:
    """``(certificate, key)`` paths of a client in a certificate directory."""
    _check_id(client_id)
    d = Path(directory)
    return d / f"client-{client_id}.crt", d / f"client-{client_id}.key"


def issue_client(
    directory: str | os.PathLike[str],
    client_id: int,
    *,
    days: int = DEFAULT_DAYS,
    not_before: _dt.datetime | None = None,
    not_after: _dt.datetime | None = None,
) -> tuple[Path, Path]:
    """Issue ``client-<id>.crt`` / ``.key`` signed by the CA in ``directory``.

    ``not_before`` / ``not_after`` override the validity (tests issue expired
    certificates with them).

    Raises
    ------
    ParameterError
        Bad id, no CA, or the files exist.
    """
    _check_id(client_id)
    d = Path(directory)
    return _issue(
        d,
        f"client-{client_id}",
        f"secagg client {client_id}",
        [x509.UniformResourceIdentifier(f"{CLIENT_URI_PREFIX}{client_id}")],
        ExtendedKeyUsageOID.CLIENT_AUTH,
        days,
        not_before,
        not_after,
    )


def issue_server(
    directory: str | os.PathLike[str],
    host: str,
    *,
    days: int = DEFAULT_DAYS,
    not_before: _dt.datetime | None = None,
    not_after: _dt.datetime | None = None,
) -> tuple[Path, Path]:
    """Issue ``server.crt`` / ``server.key`` for ``host`` (a DNS name or IP address).

    Raises
    ------
    ParameterError
        Empty host, no CA, or the files exist.
    """
    if not isinstance(host, str) or not host or len(host) > 253:
        raise ParameterError("host must be a DNS name or an IP address")
    san: list[x509.GeneralName]
    try:
        san = [x509.IPAddress(ipaddress.ip_address(host))]
    except ValueError:
        san = [x509.DNSName(host)]
    return _issue(
        Path(directory),
        "server",
        host,
        san,
        ExtendedKeyUsageOID.SERVER_AUTH,
        days,
        not_before,
        not_after,
    )


def client_id_from_certificate(der: bytes | None) -> int:
    """The client id bound to a (chain-verified) peer certificate.

    Exactly one SAN URI ``urn:secagg:client:<id>`` with a canonical decimal id
    in ``[1, 2^32)``; the subject is not consulted.

    Raises
    ------
    RemoteProtocolError
        No certificate, an unparsable one, or not exactly one valid client URI.
    """
    if not der:
        raise RemoteProtocolError("the peer presented no certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        raise RemoteProtocolError("the peer certificate has no usable SAN") from None
    uris = [
        u
        for u in sans.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith(CLIENT_URI_PREFIX)
    ]
    if len(uris) != 1:
        raise RemoteProtocolError("the certificate must name exactly one secagg client id")
    text = uris[0][len(CLIENT_URI_PREFIX) :]
    if not _ID_RE.fullmatch(text) or int(text) > MAX_CLIENT_ID:
        raise RemoteProtocolError("the certificate's client id is not a valid id")
    return int(text)


def check_key_mode(path: str | os.PathLike[str]) -> None:
    """Refuse a private key readable by group or others.

    Raises
    ------
    LocalProtocolError
        If ``path`` is group/other accessible.
    """
    mode = os.stat(path).st_mode & 0o077
    if mode:
        raise LocalProtocolError(f"{path} is accessible by group/others; chmod 600 it")


def identity_files(directory: str | os.PathLike[str], client_id: int) -> tuple[Path, Path]:
    """``(private, public)`` paths of a client's Ed25519 identity key."""
    _check_id(client_id)
    d = Path(directory)
    return d / f"client-{client_id}.identity", d / f"client-{client_id}.identity.pub"


def issue_identity(directory: str | os.PathLike[str], client_id: int) -> bytes:
    """Write a fresh Ed25519 identity key for ``client_id`` (malicious mode); return its
    public key.

    The private key (raw 32 bytes) is written 0600; the public key as hex.

    Raises
    ------
    ParameterError
        If the files exist.
    """
    from secagg.primitives.sign import SigningKey

    priv, pub = identity_files(directory, client_id)
    if priv.exists() or pub.exists():
        raise ParameterError(f"{priv} exists; refusing to overwrite")
    key = SigningKey.generate()
    try:
        fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # pragma: no cover - raced
        raise ParameterError(f"{priv} exists; refusing to overwrite") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key.private_bytes())
    finally:
        os.close(fd)
    pub.write_text(key.public.hex() + "\n")
    return key.public


def load_identity_public(directory: str | os.PathLike[str], client_id: int) -> bytes:
    """A client's Ed25519 public identity key from ``client-<ID>.identity.pub``.

    Raises
    ------
    ParameterError
        Missing or malformed file.
    """
    _, pub = identity_files(directory, client_id)
    try:
        raw = bytes.fromhex(pub.read_text().strip())
    except (FileNotFoundError, ValueError):
        raise ParameterError(f"no valid identity key in {pub}") from None
    if len(raw) != 32:
        raise ParameterError(f"{pub} is not a 32-byte Ed25519 public key")
    return raw


def load_identity_private(directory: str | os.PathLike[str], client_id: int) -> bytes:
    """A client's raw Ed25519 identity private key (file must be 0600).

    Raises
    ------
    ParameterError
        Missing or malformed file; LocalProtocolError if group/other readable.
    """
    priv, _ = identity_files(directory, client_id)
    try:
        check_key_mode(priv)
        raw = priv.read_bytes()
    except FileNotFoundError:
        raise ParameterError(f"no identity key {priv}") from None
    if len(raw) != 32:
        raise ParameterError(f"{priv} is not a raw 32-byte Ed25519 key")
    return raw
