"""TLS 1.3 contexts with mutual authentication (``protocols/wire/transport.md`` §1)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from secagg.errors import ParameterError
from secagg.net.certs import CA_CERT, SERVER_CERT, SERVER_KEY, check_key_mode, client_files

__all__ = ["client_context", "server_context"]


def _base(purpose: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    return ctx


def _load(ctx: ssl.SSLContext, ca: Path, cert: Path | None, key: Path | None) -> None:
    try:
        ctx.load_verify_locations(cafile=str(ca))
        if cert is not None and key is not None:
            check_key_mode(key)
            ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except FileNotFoundError as exc:
        raise ParameterError(f"missing certificate file: {exc.filename}") from None
    except ssl.SSLError as exc:
        raise ParameterError(f"cannot load certificates: {exc.reason or exc}") from None


def server_context(certs: str | os.PathLike[str]) -> ssl.SSLContext:
    """Server side: present ``server.crt``, require a client certificate from ``ca.crt``.

    Raises
    ------
    ParameterError
        Missing or unreadable files; LocalProtocolError if a key is group/other readable.
    """
    d = Path(certs)
    ctx = _base(ssl.PROTOCOL_TLS_SERVER)
    _load(ctx, d / CA_CERT, d / SERVER_CERT, d / SERVER_KEY)
    return ctx


def client_context(
    certs: str | os.PathLike[str],
    client_id: int | None,
    *,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """Client side: present ``client-<id>.crt`` (or ``cert``/``key``), verify the server
    against ``ca.crt`` and its name.

    ``client_id=None`` with no ``cert`` builds a context without a client
    certificate (only useful to test that the server refuses it).

    Raises
    ------
    ParameterError
        Missing or unreadable files.
    """
    d = Path(certs)
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = True
    c: Path | None = Path(cert) if cert is not None else None
    k: Path | None = Path(key) if key is not None else None
    if c is None and client_id is not None:
        c, k = client_files(d, client_id)
    _load(ctx, d / CA_CERT, c, k)
    return ctx
