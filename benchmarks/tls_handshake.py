"""CPU per TLS 1.3 mutual-auth handshake, per side, by certificate key type.

    python benchmarks/tls_handshake.py [N]

Runs ``N`` (default 100) handshakes between two ``ssl`` objects over memory BIOs
(no sockets, no event loop) with the transport's settings (TLS 1.3 only, client
certificate required, no session tickets) and prints the server's and the
client's CPU time (``time.thread_time``) per handshake, for a one-level chain
(CA -> leaf) of ECDSA P-256 keys (what ``secagg certs`` issues), Ed25519 keys
and RSA-2048 keys.  Every certificate is made here, in a temporary directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import ssl
import sys
import tempfile
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEYS: dict[str, Any] = {
    "ecdsa-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "rsa-2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


def _pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_certs(kind: str) -> tuple[str, tuple[str, str], tuple[str, str]]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (id 1)."""
    gen = KEYS[kind]
    digest = None if kind == "ed25519" else hashes.SHA256()
    d = tempfile.mkdtemp(prefix="tls-hs-")
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = gen()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, digest)
    )
    with open(os.path.join(d, "ca.crt"), "wb") as fh:
        fh.write(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(cn: str, eku: Any, san: Any) -> tuple[str, str]:
        key = gen()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .sign(ca_key, digest)
        )
        cp, kp = os.path.join(d, cn + ".crt"), os.path.join(d, cn + ".key")
        with open(cp, "wb") as fh:
            fh.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(kp, "wb") as fh:
            fh.write(_pem(key))
        os.chmod(kp, 0o600)
        return cp, kp

    server = leaf(
        "server", ExtendedKeyUsageOID.SERVER_AUTH, x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    )
    client = leaf(
        "client",
        ExtendedKeyUsageOID.CLIENT_AUTH,
        x509.UniformResourceIdentifier("urn:secagg:client:1"),
    )
    return os.path.join(d, "ca.crt"), server, client


def contexts(ca: str, server: tuple[str, str], client: tuple[str, str]) -> tuple[Any, Any]:
    sc = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cc = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ctx in (sc, cc):
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.options |= ssl.OP_NO_TICKET
        ctx.load_verify_locations(ca)
    sc.load_cert_chain(*server)
    cc.load_cert_chain(*client)
    return sc, cc


def handshakes(sc: Any, cc: Any, n: int) -> tuple[float, float]:
    """Mean CPU seconds per handshake: (server, client)."""
    cpu = {"s": 0.0, "c": 0.0}
    for _ in range(n):
        si, so, ci, co = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
        s = sc.wrap_bio(si, so, server_side=True)
        c = cc.wrap_bio(ci, co, server_hostname="127.0.0.1")
        for _ in range(6):
            for side, obj in (("c", c), ("s", s)):
                t0 = time.thread_time()
                with contextlib.suppress(ssl.SSLWantReadError):
                    obj.do_handshake()
                cpu[side] += time.thread_time() - t0
            if co.pending:
                si.write(co.read())
            if so.pending:
                ci.write(so.read())
        if s.getpeercert(True) is None:
            raise SystemExit("handshake did not complete")
    return cpu["s"] / n, cpu["c"] / n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    print(ssl.OPENSSL_VERSION, f"load average {os.getloadavg()[0]:.1f}")
    for kind in KEYS:
        sc, cc = contexts(*make_certs(kind))
        handshakes(sc, cc, 5)  # warm up
        s, c = handshakes(sc, cc, n)
        print(f"{kind:11s} server {s * 1e3:.3f} ms  client {c * 1e3:.3f} ms  CPU per handshake")


if __name__ == "__main__":
    main()
