"""The network runtime on real sockets: mutual TLS, frames, deadlines, faults.

Every test starts its own server on 127.0.0.1 (a free port) and shuts down
everything it started.  Sizes are small (n <= 10, m <= 2000) and deadlines
short so each test takes about a second or two.  The >= 200-round crash job is
marked ``long``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import socket
import ssl
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from secagg.encoding.quantize import QuantizationSpec
from secagg.errors import (
    AbortedError,
    DecodeError,
    ParameterError,
    PolicyError,
    RemoteProtocolError,
)
from secagg.masking import messages as m
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.policy import ClientPolicy
from secagg.net import certs
from secagg.net import framing as framing_module
from secagg.net.client import run_client
from secagg.net.framing import (
    ConnectionLostError,
    ErrorCode,
    FrameKind,
    TransportError,
    client_frame_limit,
    decode_hello,
    max_message_bytes,
    read_body,
    server_frame_limit,
)
from secagg.net.handshake import ConfigPolicy, decode_config, encode_config
from secagg.net.server import NetServer
from secagg.net.tls import client_context, server_context

ROOT = Path(__file__).resolve().parents[1]
N_IDS = 8
LENGTH = 64


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("certs")
    certs.init_ca(d)
    certs.issue_server(d, "127.0.0.1")
    for u in range(1, N_IDS + 1):
        certs.issue_client(d, u)
        certs.issue_identity(d, u)
    other = tmp_path_factory.mktemp("other-ca")
    certs.init_ca(other)
    certs.issue_client(other, 1)
    expired = tmp_path_factory.mktemp("expired")
    certs.init_ca(expired)  # only to hold the files; the cert is signed by `d`'s CA
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    exp_dir = tmp_path_factory.mktemp("expired-client")
    for name in (certs.CA_CERT, certs.CA_KEY):
        (exp_dir / name).write_bytes((d / name).read_bytes())
        os.chmod(exp_dir / name, 0o600)
    certs.issue_client(exp_dir, 2, not_before=past, not_after=past + dt.timedelta(days=1))
    return {"dir": d, "other": other, "expired": exp_dir}


def _config(
    ids: list[int],
    *,
    length: int = LENGTH,
    security: SecurityMode = SecurityMode.SEMI_HONEST,
    identity: dict[int, bytes] | None = None,
) -> RoundConfig:
    return RoundConfig.create(
        session_id=os.urandom(32),
        clients=ids,
        bits=32,
        length=length,
        protocol=ProtocolKind.SECAGG_PLUS,
        security=security,
        neighbors=min(4, len(ids) - 1),
        threshold=2 if security is SecurityMode.SEMI_HONEST else None,
        graph_seed=os.urandom(32),
        identity_keys=identity,
    )


def _inputs(ids: list[int], length: int = LENGTH) -> dict[int, np.ndarray]:
    return {u: (np.arange(length, dtype=np.uint32) * (u * 7919) + u).astype(np.uint32) for u in ids}


def _expected(inputs: dict[int, np.ndarray], ids: tuple[int, ...]) -> np.ndarray:
    acc = np.zeros(len(next(iter(inputs.values()))), dtype=np.uint32)
    for u in ids:
        acc += inputs[u]
    return acc


class NetRound:
    """A server (thread) plus honest clients (one event loop in a thread) for one round."""

    def __init__(
        self,
        ca: dict[str, Path],
        cfg: RoundConfig,
        honest: list[int],
        *,
        phase_timeout: float = 2.0,
        join_timeout: float = 3.0,
        idle: float = 1.0,
        client_kwargs: dict[int, dict[str, Any]] | None = None,
        inputs: dict[int, np.ndarray] | None = None,
        server_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.ca, self.cfg, self.honest = ca, cfg, honest
        self.inputs = inputs or _inputs(list(cfg.clients), cfg.length)
        self.server = NetServer(
            ssl_context=server_context(ca["dir"]), idle_timeout=idle, **(server_kwargs or {})
        )
        self.addr = self.server.start()
        self.pool: Any = None
        self.outcome: Any = None
        self.results: dict[int, Any] = {}
        self._kw = client_kwargs or {}
        self._pt, self._jt = phase_timeout, join_timeout
        self._opened = threading.Event()
        self._srv_thread = threading.Thread(target=self._serve)
        self._cli_thread = threading.Thread(target=self._clients)

    def _serve(self) -> None:
        orig = self.server.open_round

        def open_round(cfg: RoundConfig, **kw: Any) -> Any:
            pool = orig(cfg, **kw)
            self._opened.set()
            return pool

        self.server.open_round = open_round  # type: ignore[method-assign]
        self.outcome, self.pool = self.server.run_round(
            self.cfg, phase_timeout=self._pt, join_timeout=self._jt
        )

    async def _one(self, u: int) -> tuple[int, Any]:
        kw = dict(self._kw.get(u, {}))
        try:
            return u, await run_client(
                host=self.addr[0],
                port=self.addr[1],
                ssl_context=client_context(self.ca["dir"], u),
                client_id=u,
                input_vector=self.inputs[u],
                connect_timeout=5.0,
                **kw,
            )
        except Exception as exc:
            return u, exc

    def _clients(self) -> None:
        async def main() -> dict[int, Any]:
            return dict(await asyncio.gather(*(self._one(u) for u in self.honest)))

        self.results = asyncio.run(main())

    def __enter__(self) -> NetRound:
        self._srv_thread.start()
        assert self._opened.wait(5)
        self._cli_thread.start()
        return self

    def wait(self) -> None:
        self._srv_thread.join(30)
        self._cli_thread.join(30)
        assert not self._srv_thread.is_alive() and not self._cli_thread.is_alive()

    def __exit__(self, *exc: object) -> None:
        self.wait()
        self.server.close()


# -- a raw TLS peer for the misbehaving clients -------------------------------------------


def _raw(
    ca_dir: Path, addr: tuple[str, int], client_id: int | None, *, cert_dir: Path | None = None
) -> ssl.SSLSocket:
    ctx = (
        client_context(ca_dir, None)
        if client_id is None
        else client_context(cert_dir or ca_dir, client_id)
    )
    if cert_dir is not None:
        ctx.load_verify_locations(cafile=str(ca_dir / certs.CA_CERT))
    sock = socket.create_connection(addr, timeout=5)
    return ctx.wrap_socket(sock, server_hostname="127.0.0.1")


def _recv_exact(s: ssl.SSLSocket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _read_frame(s: ssl.SSLSocket) -> tuple[int, bytes]:
    (length,) = struct.unpack(">I", _recv_exact(s, 4))
    kind = _recv_exact(s, 1)[0]
    return kind, _recv_exact(s, length - 1)


def _send_frame(s: ssl.SSLSocket, kind: int, payload: bytes) -> None:
    s.sendall(struct.pack(">IB", 1 + len(payload), kind) + payload)


def _error_code_or_closed(s: ssl.SSLSocket) -> int | None:
    """The ERROR code the server sent before closing (None if it just closed)."""
    try:
        while True:
            kind, body = _read_frame(s)
            if kind == FrameKind.ERROR:
                return int.from_bytes(body[:2], "big")
    except (ConnectionError, OSError, ssl.SSLError):
        return None


def _hello(s: ssl.SSLSocket) -> RoundConfig:
    kind, body = _read_frame(s)
    assert kind == FrameKind.HELLO
    _, _, cfg_bytes = decode_hello(body)
    return decode_config(cfg_bytes)


def _assert_exact(r: NetRound, survivors: set[int]) -> None:
    assert r.outcome is not None and not r.outcome.aborted, r.outcome.abort_reason
    assert set(r.outcome.survivors) == survivors
    np.testing.assert_array_equal(r.outcome.result, _expected(r.inputs, r.outcome.survivors))


# -- units ---------------------------------------------------------------------------------


def test_core_floors_never_import_the_network_runtime() -> None:
    import ast

    pkg = ROOT / "secagg"
    for floor in ("primitives", "encoding", "masking", "lightsecagg", "he", "dp"):
        for path in sorted((pkg / floor).rglob("*.py")) if (pkg / floor).is_dir() else []:
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                assert not any(n == "secagg.net" or n.startswith("secagg.net.") for n in names), (
                    f"{path} imports the network runtime"
                )


def test_keys_are_written_0600_and_never_overwritten(tmp_path: Path) -> None:
    certs.init_ca(tmp_path)
    _, key = certs.issue_client(tmp_path, 7)
    certs.issue_server(tmp_path, "localhost")
    priv, _ = certs.identity_files(tmp_path, 7)
    certs.issue_identity(tmp_path, 7)
    for k in (tmp_path / certs.CA_KEY, key, tmp_path / certs.SERVER_KEY, priv):
        assert stat.S_IMODE(os.stat(k).st_mode) == 0o600
    with pytest.raises(ParameterError):
        certs.issue_client(tmp_path, 7)
    with pytest.raises(ParameterError):
        certs.init_ca(tmp_path)


def test_client_id_comes_from_exactly_one_san_uri(tmp_path: Path) -> None:
    from cryptography import x509

    certs.init_ca(tmp_path)
    crt, _ = certs.issue_client(tmp_path, 4242)
    der = x509.load_pem_x509_certificate(crt.read_bytes()).public_bytes(
        __import__(
            "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]
        ).Encoding.DER
    )
    assert certs.client_id_from_certificate(der) == 4242
    srv, _ = certs.issue_server(tmp_path, "127.0.0.1")
    sder = x509.load_pem_x509_certificate(srv.read_bytes()).public_bytes(
        __import__(
            "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]
        ).Encoding.DER
    )
    with pytest.raises(RemoteProtocolError):
        certs.client_id_from_certificate(sder)  # no client URI
    with pytest.raises(RemoteProtocolError):
        certs.client_id_from_certificate(None)


def test_config_codec_round_trips_and_refuses_garbage() -> None:
    cfg = _config([1, 2, 3, 5, 8])
    assert decode_config(encode_config(cfg)) == cfg
    raw = encode_config(cfg)
    for bad in (raw[:-1], raw + b"\0", b"\0\2" + raw[2:], os.urandom(len(raw))):
        with pytest.raises(DecodeError):
            decode_config(bad)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio's TLS buffer is 3.11+")
def test_the_server_loop_gives_each_tls_connection_a_small_receive_buffer(
    ca: dict[str, Path],
) -> None:
    """Memory per connection: 32 KiB of TLS receive buffer, not asyncio's 256 KiB."""
    from secagg.net.server import TLS_READ_CHUNK, _ServerLoop

    seen: list[int] = []
    loop = _ServerLoop()

    async def main() -> None:
        async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            proto = w.transport._ssl_protocol  # type: ignore[attr-defined]
            seen.extend([len(proto._ssl_buffer), proto.max_size])
            w.close()

        srv = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_context(ca["dir"]))
        port = srv.sockets[0].getsockname()[1]
        _, w = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(ca["dir"], 1), server_hostname="127.0.0.1"
        )
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.02)
        w.close()
        srv.close()
        await srv.wait_closed()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert seen == [TLS_READ_CHUNK, TLS_READ_CHUNK] and TLS_READ_CHUNK < 256 * 1024


@pytest.mark.parametrize("fallback", [False, True], ids=["asyncio.timeout", "wait_for"])
def test_a_frame_body_may_trickle_in_but_not_stall(monkeypatch, fallback) -> None:
    """The idle timeout is the longest gap between bytes, not a bound on the whole
    frame: pieces 0.1 s apart arrive over 0.6 s with an idle timeout of 0.3 s; a gap
    of 0.3 s mid-frame is a cut (ERROR 8).  Also on the Python 3.10 path (no
    ``asyncio.timeout``: a ``wait_for`` per piece)."""
    if fallback:
        monkeypatch.setattr(framing_module, "_timeout", None)

    async def feed(reader: asyncio.StreamReader, pieces: int, gap: float) -> None:
        for _ in range(pieces):
            await asyncio.sleep(gap)
            reader.feed_data(b"x" * 10)

    async def trickle() -> bytearray:
        reader = asyncio.StreamReader()
        feeder = asyncio.ensure_future(feed(reader, 6, 0.1))
        try:
            return await read_body(reader, 60, idle_timeout=0.3)
        finally:
            await feeder

    assert asyncio.run(trickle()) == b"x" * 60

    async def stall() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"x" * 10)
        await read_body(reader, 60, idle_timeout=0.3)

    t0 = time.monotonic()
    with pytest.raises(ConnectionLostError) as err:
        asyncio.run(stall())
    assert err.value.code is ErrorCode.DEADLINE
    assert 0.25 < time.monotonic() - t0 < 5


def test_frame_limits_follow_the_config() -> None:
    small, big = _config([1, 2, 3], length=10), _config([1, 2, 3], length=10_000)
    # wire v2: header, bits, length, the U2-view digest, then ceil(m*b/8) packed bytes
    assert max_message_bytes(big, m.MessageType.MASKED_INPUT) == 44 + 1 + 8 + 32 + 40_000
    odd = RoundConfig.create(
        session_id=os.urandom(32),
        clients=[1, 2, 3],
        bits=20,
        length=1001,
        protocol=ProtocolKind.SECAGG,
        threshold=2,
    )
    assert max_message_bytes(odd, m.MessageType.MASKED_INPUT) == 44 + 41 + (1001 * 20 + 7) // 8
    assert server_frame_limit(big, m.MessageType.MASKED_INPUT) > server_frame_limit(
        small, m.MessageType.MASKED_INPUT
    )
    assert server_frame_limit(big, m.MessageType.ADVERTISE_KEYS) <= 1 + 2 + 1024  # ERROR size
    assert client_frame_limit(big) < 4096  # clients never receive vectors
    # the bound is tight: a real message of each type fits
    inputs = _inputs([1, 2, 3], 10)
    c = Client(config=small, client_id=1, input_vector=inputs[1])
    assert len(m.encode(c.start())) <= max_message_bytes(small, m.MessageType.ADVERTISE_KEYS)


def _upto(kind: m.MessageType, cfg: RoundConfig, msg: m.Message) -> None:
    assert msg.TYPE is kind
    assert len(m.encode(msg)) <= max_message_bytes(cfg, kind), kind.name


@pytest.mark.parametrize("protocol", list(ProtocolKind))
@pytest.mark.parametrize("security", list(SecurityMode))
def test_every_v2_message_of_a_full_round_fits_its_frame_limit(
    protocol: ProtocolKind, security: SecurityMode
) -> None:
    """Drive the sans-IO parties through a whole round (SeedRequest/SeedReveal in
    SecAgg+, signatures in malicious mode); every message fits the transport's limit
    for its type, and the transport expects the reply type the core sends."""
    from secagg.masking.server import Server
    from secagg.net.framing import CLIENT_TYPES, SERVER_TYPES, reply_type
    from secagg.phase import Phase
    from secagg.primitives.sign import SigningKey

    ids = [1, 2, 3, 4, 5, 6]
    keys = {u: SigningKey.generate() for u in ids}
    malicious = security is SecurityMode.MALICIOUS
    cfg = RoundConfig.create(
        session_id=os.urandom(32),
        clients=ids,
        bits=13,
        length=37,
        protocol=protocol,
        security=security,
        neighbors=4 if protocol is ProtocolKind.SECAGG_PLUS else None,
        threshold=None if malicious else 2,
        graph_seed=os.urandom(32),
        identity_keys={u: k.public for u, k in keys.items()} if malicious else None,
    )
    assert set(CLIENT_TYPES) | set(SERVER_TYPES) == set(m.MessageType)
    inputs = {u: np.arange(37, dtype=np.uint32) % (1 << 13) for u in ids}
    clients = {
        u: Client(
            config=cfg,
            client_id=u,
            input_vector=inputs[u],
            identity_key=keys[u] if malicious else None,
        )
        for u in ids
    }
    server = Server(config=cfg)
    pending = {u: c.start() for u, c in clients.items()}
    expected: dict[int, m.MessageType | None] = dict.fromkeys(ids, reply_type(None))
    seen: set[m.MessageType] = set()
    while server.phase not in (Phase.FINALIZING, Phase.ABORTED):
        out: list[tuple[int, m.Message]] = []
        for u, msg in pending.items():
            assert msg.TYPE is expected[u]
            _upto(msg.TYPE, cfg, msg)
            seen.add(msg.TYPE)
            out += server.receive(u, m.encode(msg))  # the last one closes the phase
        pending = {}
        for u, msg in out:
            _upto(msg.TYPE, cfg, msg)
            seen.add(msg.TYPE)
            expected[u] = reply_type(msg.TYPE)
            (reply,) = clients[u].handle(msg)
            pending[u] = reply
    assert not pending
    assert server.phase is Phase.FINALIZING
    assert all(c.phase is Phase.COMPLETED for c in clients.values())
    want = {
        m.MessageType.ADVERTISE_KEYS,
        m.MessageType.KEYS_BROADCAST,
        m.MessageType.SHARE_KEYS,
        m.MessageType.MASKED_INPUT_REQUEST,
        m.MessageType.MASKED_INPUT,
        m.MessageType.UNMASKING_REQUEST,
        m.MessageType.UNMASKING_RESPONSE,
    }
    if protocol is ProtocolKind.SECAGG_PLUS:
        want |= {m.MessageType.SEED_REQUEST, m.MessageType.SEED_REVEAL}
    if malicious:
        want |= {m.MessageType.CONSISTENCY_REQUEST, m.MessageType.CONSISTENCY_SIGNATURE}
    assert seen == want


def test_the_abort_with_its_reason_code_fits_the_client_limit() -> None:
    from secagg.masking.abort import AbortReason

    cfg = _config([1, 2, 3])
    abort = m.Abort(
        session_id=cfg.session_id,
        sender=m.SERVER_ID,
        recipient=1,
        code=max(AbortReason),
        reason="\u00e9" * (m.MAX_REASON_BYTES // 2),
    )
    assert len(m.encode(abort)) == max_message_bytes(cfg, m.MessageType.ABORT)
    assert 1 + len(m.encode(abort)) <= client_frame_limit(cfg)


def test_the_streamed_masked_input_is_the_v2_packed_encoding() -> None:
    """What the network client writes for its MaskedInput equals ``encode`` (packed at
    b bits, with the view digest) and the core's ``masked_input_stream``."""
    from secagg.net.client import _stream_masked

    ids = [1, 2, 3]
    cfg = RoundConfig.create(
        session_id=os.urandom(32),
        clients=ids,
        bits=11,
        length=1003,
        protocol=ProtocolKind.SECAGG,
        threshold=2,
    )
    inputs = {u: (np.arange(1003, dtype=np.uint32) * u) % (1 << 11) for u in ids}
    clients = {u: Client(config=cfg, client_id=u, input_vector=inputs[u]) for u in ids}
    from secagg.masking.server import Server

    server = Server(config=cfg)
    out: list[tuple[int, m.Message]] = []
    for u, c in clients.items():
        out += server.receive(u, m.encode(c.start()))
    while True:  # keys, then boxes
        replies = {u: clients[u].handle(msg)[0] for u, msg in out}
        if replies[1].TYPE is m.MessageType.MASKED_INPUT:
            break
        out = []
        for u, msg in replies.items():
            out += server.receive(u, m.encode(msg))
    masked = replies[1]
    assert isinstance(masked, m.MaskedInput)

    class Sink:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, b: bytes) -> None:
            self.data += b

        async def drain(self) -> None:
            return None

    sink = Sink()
    points: list[str] = []
    size = asyncio.run(_stream_masked(sink, masked, 1.0, points.append, 96))  # type: ignore[arg-type]
    head, body = bytes(sink.data[:5]), bytes(sink.data[5:])
    assert head == struct.pack(">IB", 1 + size, FrameKind.MESSAGE)
    assert body == m.encode(masked) == b"".join(clients[1].masked_input_stream(96))
    assert size == max_message_bytes(cfg, m.MessageType.MASKED_INPUT)
    assert len(points) == -(-1003 // 96)
    with pytest.raises(ParameterError, match="multiple of 8"):
        asyncio.run(
            run_client(
                host="127.0.0.1",
                port=1,
                ssl_context=ssl.create_default_context(),
                client_id=1,
                input_vector=inputs[1],
                stream_chunk=100,
            )
        )


# -- complete rounds -------------------------------------------------------------------------


def test_round_over_mutual_tls_is_exact(ca: dict[str, Path]) -> None:
    ids = [1, 2, 3, 4, 5]
    with NetRound(ca, _config(ids), ids) as r:
        pass
    _assert_exact(r, set(ids))
    assert all(not isinstance(v, Exception) for v in r.results.values()), r.results
    up = sum(s.message_bytes_in for s in r.pool.stats.values())
    assert up == sum(v.message_bytes_sent for v in r.results.values())


def test_malicious_round_over_tls(ca: dict[str, Path]) -> None:
    from secagg.primitives.sign import SigningKey

    ids = [1, 2, 3, 4]
    keys = {
        u: SigningKey.from_private_bytes(certs.load_identity_private(ca["dir"], u)) for u in ids
    }
    cfg = _config(
        ids, security=SecurityMode.MALICIOUS, identity={u: k.public for u, k in keys.items()}
    )
    with NetRound(ca, cfg, ids, client_kwargs={u: {"identity_key": keys[u]} for u in ids}) as r:
        pass
    _assert_exact(r, set(ids))


# -- refused at the TLS handshake: the round is unaffected -------------------------------------


@pytest.mark.parametrize("case", ["no-certificate", "other-ca", "expired", "tls1.2"])
def test_bad_certificates_are_refused_at_the_handshake(ca: dict[str, Path], case: str) -> None:
    ids = [1, 2, 3, 4]
    with (
        NetRound(ca, _config(ids), ids) as r,
        pytest.raises((ssl.SSLError, ConnectionError, OSError)),
    ):
        if case == "no-certificate":
            s = _raw(ca["dir"], r.addr, None)
        elif case == "other-ca":
            s = _raw(ca["dir"], r.addr, 1, cert_dir=ca["other"])
        elif case == "tls1.2":
            ctx = client_context(ca["dir"], 1)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            s = ctx.wrap_socket(
                socket.create_connection(r.addr, timeout=5), server_hostname="127.0.0.1"
            )
        else:
            s = _raw(ca["dir"], r.addr, 2, cert_dir=ca["expired"])
        _read_frame(s)  # TLS 1.3: the client's certificate is checked after its Finished
    _assert_exact(r, set(ids))
    assert r.server.refused == []  # never reached the round: refused by TLS itself


def test_a_client_claiming_another_id_is_refused(ca: dict[str, Path]) -> None:
    ids = [1, 2, 3, 4, 5]
    honest = [1, 2, 3, 4]
    with NetRound(ca, _config(ids), honest) as r:
        s = _raw(ca["dir"], r.addr, 5)
        cfg = _hello(s)
        liar = Client(config=cfg, client_id=2, input_vector=r.inputs[2])
        data = m.encode(liar.start())  # a valid AdvertiseKeys with sender = 2
        _send_frame(s, FrameKind.MESSAGE, data)
        assert _error_code_or_closed(s) == ErrorCode.REJECTED
        s.close()
    _assert_exact(r, set(honest))
    assert "transport sender" in r.outcome.server_rejections[5]


def test_the_same_id_twice_second_refused_first_unaffected(ca: dict[str, Path]) -> None:
    ids = [1, 2, 3, 4]
    spoke, proceed = threading.Event(), threading.Event()

    def hold(point: str) -> None:
        if point == "advertised":
            spoke.set()
            proceed.wait(5)

    with NetRound(ca, _config(ids), ids, client_kwargs={3: {"checkpoint": hold}}) as r:
        assert spoke.wait(5)
        s = _raw(ca["dir"], r.addr, 3)
        assert _error_code_or_closed(s) == ErrorCode.DUPLICATE
        s.close()
        proceed.set()
    _assert_exact(r, set(ids))


@pytest.mark.parametrize("case", ["over-limit", "truncated", "garbage", "unsolicited"])
def test_bad_frames_close_that_connection_only(ca: dict[str, Path], case: str) -> None:
    ids = [1, 2, 3, 4, 5]
    honest = [1, 2, 3, 4]
    with NetRound(ca, _config(ids), honest) as r:
        s = _raw(ca["dir"], r.addr, 5)
        _hello(s)
        if case == "over-limit":
            s.sendall(struct.pack(">IB", 10_000_000, FrameKind.MESSAGE) + b"\0" * 100)
            assert _error_code_or_closed(s) == ErrorCode.TOO_LARGE
        elif case == "truncated":
            s.sendall(struct.pack(">IB", 206, FrameKind.MESSAGE) + b"\1" * 20)
            s.close()
        elif case == "garbage":
            s.sendall(os.urandom(64))
            assert _error_code_or_closed(s) in (ErrorCode.TOO_LARGE, ErrorCode.MALFORMED, None)
        else:  # a well-formed frame of a type the server did not ask for
            _send_frame(s, 7, b"\0" * 8)
            assert _error_code_or_closed(s) == ErrorCode.MALFORMED
        s.close()
    _assert_exact(r, set(honest))
    assert 5 in r.pool.cut


def test_a_seed_reveal_over_its_limit_is_cut_and_the_secagg_plus_round_aborts(
    ca: dict[str, Path],
) -> None:
    """The server's limit follows the reply it awaits: after a SeedRequest only a
    SeedReveal-sized frame is read (an upload-sized one is refused unread)."""
    ids = [1, 2, 3, 4, 5]
    cfg = _config(ids, length=2000)
    with NetRound(ca, cfg, [1, 2, 3, 4]) as r:
        s = _raw(ca["dir"], r.addr, 5)
        got = _hello(s)
        me = Client(config=got, client_id=5, input_vector=r.inputs[5])
        _send_frame(s, FrameKind.MESSAGE, m.encode(me.start()))
        kind, body = _read_frame(s)
        assert kind == FrameKind.MESSAGE and m.peek_type(body) is m.MessageType.SEED_REQUEST
        limit = server_frame_limit(cfg, m.MessageType.SEED_REVEAL)
        assert limit < server_frame_limit(cfg, m.MessageType.MASKED_INPUT)
        s.sendall(struct.pack(">IB", limit + 1, FrameKind.MESSAGE) + b"\0" * 64)
        assert _error_code_or_closed(s) == ErrorCode.TOO_LARGE
        s.close()
    assert r.outcome.aborted and r.outcome.result is None
    assert "graph-seed" in (r.outcome.abort_reason or "")
    assert all(isinstance(v, AbortedError) for v in r.results.values()), r.results


def test_slowloris_is_cut_at_the_deadline_as_a_dropout(ca: dict[str, Path]) -> None:
    ids = [1, 2, 3, 4, 5]
    honest = [1, 2, 3, 4]
    t0 = time.monotonic()
    with NetRound(ca, _config(ids), honest, join_timeout=1.5) as r:
        s = _raw(ca["dir"], r.addr, 5)
        _hello(s)  # ... and never speaks
        assert _error_code_or_closed(s) == ErrorCode.DEADLINE
        s.close()
    assert time.monotonic() - t0 < 10
    _assert_exact(r, set(honest))
    assert "deadline" in r.pool.cut[5]
    assert 5 not in r.outcome.sets["U1"]


def _run_stalling_client(
    r: Any, ca: Any, cid: int, vector: Any, stall: Any, *, stream_chunk: int
) -> Any:
    """Client ``cid`` of round ``r`` with checkpoint ``stall``: its result or its error."""

    async def staller() -> Any:
        try:
            return await run_client(
                host=r.addr[0],
                port=r.addr[1],
                ssl_context=client_context(ca["dir"], cid),
                client_id=cid,
                input_vector=vector,
                checkpoint=stall,
                stream_chunk=stream_chunk,
            )
        except Exception as exc:
            return exc

    return asyncio.run(staller())


def test_a_client_that_stops_mid_upload_is_cut_and_dropped(ca: dict[str, Path]) -> None:
    ids = [1, 2, 3, 4, 5]
    stalled = threading.Event()

    def stall(point: str) -> None:
        if point == "upload:0":
            stalled.set()
            time.sleep(2.5)  # blocks this client's loop: no more bytes for > idle timeout

    cfg = _config(ids, length=2000)
    inputs = _inputs(ids, 2000)
    with NetRound(ca, cfg, [1, 2, 3, 4], idle=1.0, inputs=inputs) as r:
        res = _run_stalling_client(r, ca, 5, inputs[5], stall, stream_chunk=104)
    assert stalled.is_set()
    assert isinstance(res, (ConnectionLostError, TransportError)), res
    _assert_exact(r, {1, 2, 3, 4})
    assert 5 in r.outcome.sets["U2"] and 5 not in r.outcome.sets["U3"]  # dropout of masked input


def test_clients_that_come_before_the_round_opens_retry_and_join(ca: dict[str, Path]) -> None:
    ids = [1, 2, 3]
    cfg = _config(ids)
    inputs = _inputs(ids)
    server = NetServer(ssl_context=server_context(ca["dir"]))
    host, port = server.start()
    box: dict[str, Any] = {}

    def serve() -> None:
        time.sleep(0.8)  # the clients connect first and are told "no round open"
        box["outcome"], _ = server.run_round(cfg, phase_timeout=3.0, join_timeout=5.0)

    t = threading.Thread(target=serve)
    t.start()
    try:

        async def main() -> list[Any]:
            return await asyncio.gather(
                *(
                    run_client(
                        host=host,
                        port=port,
                        ssl_context=client_context(ca["dir"], u),
                        client_id=u,
                        input_vector=inputs[u],
                        connect_timeout=10.0,
                    )
                    for u in ids
                )
            )

        asyncio.run(main())
    finally:
        t.join(30)
        server.close()
    assert any("no round is open" in why for _, why in server.refused)
    out = box["outcome"]
    assert not out.aborted
    np.testing.assert_array_equal(out.result, _expected(inputs, tuple(ids)))


def test_a_policy_refusal_sends_nothing_about_the_input(ca: dict[str, Path]) -> None:
    ids = [1, 2, 3, 4, 5]
    sent: list[bytes] = []
    kw = {
        5: {
            "policy": ConfigPolicy(length=LENGTH, bits=32, rules=ClientPolicy(min_clients=10)),
            "observer": sent.append,
        }
    }
    with NetRound(ca, _config(ids), ids, client_kwargs=kw) as r:
        pass
    assert isinstance(r.results[5], PolicyError)
    _assert_exact(r, {1, 2, 3, 4})
    assert "ERROR 6" in r.pool.client_errors[5]
    assert len(sent) == 1 and sent[0][4] == FrameKind.ERROR


# -- crashes and a killed server --------------------------------------------------------------


def _crash_sim(**kw: Any) -> dict[str, Any]:
    """A small simulate_net round with short timeouts and 2 processes for the others."""
    from secagg.net.simulate import simulate_net

    return simulate_net(phase_timeout=3.0, join_timeout=15.0, client_procs=2, **kw)


def test_sigkilled_clients_give_an_exact_sum_or_a_clean_abort() -> None:
    rep = _crash_sim(
        clients=8,
        length=200,
        crash=0.25,
        seed=11,
        crash_points=["hello", "boxes", "upload:0", "unmasking"],
        stream_chunk=48,
    )
    assert rep["killed_by_sigkill"] == 2
    assert rep["aborted"] or rep["exact"] is True
    assert not rep["aborted"], rep["abort_reason"]


def test_crashing_clients_grouped_per_point_die_together_and_the_sum_stays_exact() -> None:
    from secagg.net.simulate import simulate_net

    rep = _crash_sim(
        clients=10, length=64, crash=0.4, seed=4, crash_points=["boxes"], crash_group=2
    )
    # 4 crashing clients in 2 processes (2 hosting the others): all 4 SIGKILLed after
    # key sharing, so the masked-input phase lost them and the sum is over the 6 others
    assert rep["crash_processes"] == 2 and rep["client_processes"] == 4
    assert rep["killed_by_sigkill"] == 4 and set(rep["crashed"].values()) == {"boxes"}
    assert not rep["aborted"], rep["abort_reason"]
    assert rep["exact"] is True and rep["survivors"] == 6
    with pytest.raises(ParameterError, match="crash_group"):
        simulate_net(clients=4, length=8, crash_group=0)


def test_crash_groups_share_a_point_and_split_evenly() -> None:
    from secagg.net.simulate import ClientSpec, _crash_groups

    def spec(u: int) -> ClientSpec:
        return ClientSpec(u, b"s" * 32, 32, 8, None, None, None, 8)

    plan = {1: "boxes", 2: "hello", 3: "boxes", 4: "boxes", 5: "boxes", 6: "boxes", 7: "hello"}
    specs = {u: spec(u) for u in plan}
    groups = [[s.client_id for s in g] for g in _crash_groups(plan, specs, 2)]
    assert groups == [[1, 5], [3, 6], [4], [2, 7]]  # "boxes": 5 clients, at most 2 each
    assert [[s.client_id for s in g] for g in _crash_groups(plan, specs, 1)] == [
        [1], [3], [4], [5], [6], [2], [7]]
    assert [[s.client_id for s in g] for g in _crash_groups(plan, specs, 9)] == [
        [1, 3, 4, 5, 6], [2, 7]]


def test_a_client_killed_before_its_seed_reveal_aborts_secagg_plus_cleanly() -> None:
    """v2 commit-reveal: a client of U1 that dies after the SeedRequest arrived never
    reveals its graph-seed part, so the round aborts (code SEED_REVEAL_MISSING) and
    every other client is told; nothing is summed."""
    rep = _crash_sim(clients=5, length=40, crash=0.2, seed=3, crash_points=["seed"])
    assert rep["killed_by_sigkill"] == 1
    assert rep["aborted"] and rep["exact"] is None and rep["survivors"] == 0
    assert "graph-seed" in rep["abort_reason"]
    (dead,) = rep["crashed"]
    others = [s for u, s in rep["client_status"].items() if u != dead]
    assert len(others) == 4 and all("SEED_REVEAL_MISSING" in s for s in others), others


def test_same_seed_same_sum_and_transcript_as_the_inprocess_engine() -> None:
    import hashlib
    import warnings

    from secagg.errors import InsecureConfigurationWarning
    from secagg.net.simulate import make_input, simulate_net
    from secagg.primitives.rand import InsecureDeterministicRandom
    from secagg.runtime.api import build_config
    from secagg.sim.runtime import run_round

    n, length, seed = 6, 100, 5
    rep = simulate_net(clients=n, length=length, seed=seed, phase_timeout=3.0, client_procs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureConfigurationWarning)
        rng = InsecureDeterministicRandom(seed)
    ids = list(range(1, n + 1))
    cfg, idkeys = build_config(
        ids,
        bits=32,
        length=length,
        protocol=ProtocolKind.SECAGG_PLUS,
        security=SecurityMode.SEMI_HONEST,
        neighbors=None,
        threshold=None,
        rng=rng,
    )
    inputs = {u: make_input(seed.to_bytes(32, "big"), u, 32, length) for u in ids}
    ref = run_round(inputs, config=cfg, rng=rng, identity_keys=idkeys)
    assert rep["exact"] is True and ref.total is not None
    assert rep["total_sha256"] == hashlib.sha256(ref.total.tobytes()).hexdigest()
    # one driver for every engine: the same frames, so the same transcript digest
    assert rep["transcript_digest"] == ref.transcript_digest


def _spawn_serve(
    ca_dir: Path, out: Path, n: int, *extra: str, rounds: int = 1, deadline: float = 5
) -> subprocess.Popen[str]:
    """``secagg serve`` on a free loopback port for ``n`` clients (``extra``: more flags)."""
    return _popen_cli(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--certs",
        str(ca_dir),
        "--clients",
        str(n),
        "--length",
        str(LENGTH),
        "--join-timeout",
        "60",
        "--deadline",
        f"{deadline:g}",
        "--rounds",
        str(rounds),
        "--out",
        str(out),
        *extra,
    )


def _port_of(proc: subprocess.Popen[str]) -> int:
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "listening on" in line, line
    return int(line.split()[4].split(":")[-1])


@pytest.mark.parametrize("kill_at", ["keys", "boxes"])
def test_server_killed_clients_fail_cleanly_and_never_sent_their_input(
    ca: dict[str, Path], tmp_path: Path, kill_at: str
) -> None:
    ids = [1, 2, 3]
    proc = _spawn_serve(ca["dir"], tmp_path / "sum.npy", len(ids))
    try:
        port = _port_of(proc)
        inputs = _inputs(ids)
        sent: dict[int, list[bytes]] = {u: [] for u in ids}

        def kill(point: str) -> None:
            if point == kill_at and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()

        async def main() -> dict[int, Any]:
            async def one(u: int) -> tuple[int, Any]:
                try:
                    return u, await run_client(
                        host="127.0.0.1",
                        port=port,
                        ssl_context=client_context(ca["dir"], u),
                        client_id=u,
                        input_vector=inputs[u],
                        observer=sent[u].append,
                        checkpoint=kill if u == 1 else None,
                    )
                except Exception as exc:
                    return u, exc

            return dict(await asyncio.gather(*(one(u) for u in ids)))

        res = asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    for u in ids:
        assert isinstance(res[u], ConnectionLostError), res[u]
        assert "connection to the server lost" in str(res[u])
        blob = b"".join(sent[u])
        assert inputs[u].tobytes() not in blob  # nothing of the input left unmasked
        assert inputs[u][:8].tobytes() not in blob


def test_cli_client_exits_nonzero_with_a_clear_error_when_the_server_dies(
    ca: dict[str, Path], tmp_path: Path
) -> None:
    proc = _spawn_serve(ca["dir"], tmp_path / "sum.npy", 3)
    clients = []
    try:
        port = _port_of(proc)
        np.save(tmp_path / "x.npy", _inputs([1])[1])
        for u in (1, 2):  # client 3 never comes: the server waits in its first phase
            clients.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "import secagg.cli as c, sys; sys.exit(c.main())",
                        "client",
                        "--server",
                        f"127.0.0.1:{port}",
                        "--certs",
                        str(ca["dir"]),
                        "--id",
                        str(u),
                        "--input",
                        str(tmp_path / "x.npy"),
                    ],
                    stderr=subprocess.PIPE,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            )
        for c in clients:  # both joined the round (config accepted)
            assert c.stderr is not None
            assert "connected" in c.stderr.readline()
        proc.send_signal(signal.SIGKILL)
        for c in clients:
            _, err = c.communicate(timeout=60)
            assert c.returncode != 0
            assert "connection to the server lost" in err, err
    finally:
        for p in (proc, *clients):
            if p.poll() is None:
                p.kill()
            p.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_cli_serve_and_clients_complete_two_rounds(ca: dict[str, Path], tmp_path: Path) -> None:
    proc = _spawn_serve(ca["dir"], tmp_path / "sum.npy", 3, rounds=2)
    inputs = _inputs([1, 2, 3])
    try:
        port = _port_of(proc)
        cl = []
        for u in (1, 2, 3):
            np.save(tmp_path / f"x{u}.npy", inputs[u])
            cl.append(
                _popen_cli(
                    "client",
                    "--server",
                    f"127.0.0.1:{port}",
                    "--certs",
                    str(ca["dir"]),
                    "--id",
                    str(u),
                    "--input",
                    str(tmp_path / f"x{u}.npy"),
                    "--rounds",
                    "2",
                )
            )
        _join(proc, cl, serve_rc=0)
    finally:
        _stop(proc)
    for r in (1, 2):  # a fresh session per round; the clients reconnect
        total = np.load(tmp_path / f"sum-round{r}.npy")
        np.testing.assert_array_equal(total, _expected(inputs, (1, 2, 3)))


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-c", "import secagg.cli as c, sys; sys.exit(c.main())", *argv]


def _popen_cli(*argv: str) -> subprocess.Popen[str]:
    """``secagg *argv`` as a child process of this checkout, stderr captured."""
    return subprocess.Popen(
        _cli(*argv),
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _spawn_float_serve(
    ca_dir: Path, tmp_path: Path, n: int, clip: float, vbits: int, out: Path
) -> subprocess.Popen[str]:
    """``secagg serve`` for one float round (report in ``tmp_path/report.json``)."""
    return _spawn_serve(
        ca_dir,
        out,
        n,
        "--clip",
        str(clip),
        "--value-bits",
        str(vbits),
        "--json",
        str(tmp_path / "report.json"),
        deadline=10,
    )


def _join(
    serve: subprocess.Popen[str],
    clients: list[subprocess.Popen[str]],
    *,
    serve_rc: int,
    clients_ok: bool = True,
) -> None:
    """Wait for the clients (each exits 0 if ``clients_ok``), then for ``secagg serve``."""
    for c in clients:
        _, err = c.communicate(timeout=60)
        if clients_ok:
            assert c.returncode == 0, err
    assert serve.wait(timeout=30) == serve_rc


def _stop(serve: subprocess.Popen[str]) -> None:
    """Kill ``secagg serve`` if it still runs; reap it and close its pipe."""
    if serve.poll() is None:
        serve.kill()
    serve.wait()
    if serve.stderr is not None:
        serve.stderr.close()


def test_cli_float_updates_go_through_the_scheme_halves(
    ca: dict[str, Path], tmp_path: Path
) -> None:
    """Float .npy in, float sum out: the clients quantize with MaskedClientHalf, the server
    decodes with MaskedServerHalf; the sum is within one step per client of the exact one."""
    clip, vbits, n = 2.0, 16, 3
    rng = np.random.default_rng(5)  # test data, not secret
    ups = {u: rng.uniform(-3.0, 3.0, LENGTH) for u in range(1, n + 1)}  # some values clip
    out = tmp_path / "sum.npy"
    serve = _spawn_float_serve(ca["dir"], tmp_path, n, clip, vbits, out)
    try:
        port = _port_of(serve)
        cl = []
        for u, x in ups.items():
            np.save(tmp_path / f"x{u}.npy", x.astype(np.float32 if u == 1 else np.float64))
            cl.append(
                _popen_cli(
                    "client",
                    "--server",
                    f"127.0.0.1:{port}",
                    "--certs",
                    str(ca["dir"]),
                    "--id",
                    str(u),
                    "--input",
                    str(tmp_path / f"x{u}.npy"),
                    "--clip",
                    str(clip),
                    "--value-bits",
                    str(vbits),
                    "--max-clients",
                    str(n),
                )
            )
        _join(serve, cl, serve_rc=0)
    finally:
        _stop(serve)
    got = np.load(out)
    assert got.dtype == np.float64 and got.shape == (LENGTH,)
    want = sum(
        np.clip(x.astype(np.float32 if u == 1 else np.float64), -clip, clip) for u, x in ups.items()
    )
    step = 2 * clip / ((1 << vbits) - 1)
    assert np.max(np.abs(got - want)) <= n * step + 1e-9
    rep = json.loads((tmp_path / "report.json").read_text())["rounds"][0]
    spec = QuantizationSpec(clip=clip, value_bits=vbits, max_clients=n)
    assert rep["bits"] == spec.bits and rep["encoding"]["count"] == n


def test_cli_float_server_releases_nothing_for_a_total_no_valid_encodings_reach(
    ca: dict[str, Path], tmp_path: Path
) -> None:
    """A client that skips its client half and sends words above the quantization range
    makes the float server refuse the sum: exit 1, no .npy, the report says why."""
    clip, vbits, n = 1.0, 16, 3
    spec = QuantizationSpec(clip=clip, value_bits=vbits, max_clients=n)
    out = tmp_path / "sum.npy"
    serve = _spawn_float_serve(ca["dir"], tmp_path, n, clip, vbits, out)
    try:
        port = _port_of(serve)
        np.save(tmp_path / "f.npy", np.zeros(LENGTH))
        # the honest two add up to about 2^16 (zeros quantize to the middle level); with
        # 180000 the total lies above n * (2^16 - 1) and below 2^bits: it does not wrap
        top = n * ((1 << vbits) - 1)
        assert (1 << vbits) + 2 + 180_000 < (1 << spec.bits) and (1 << vbits) - 2 + 180_000 > top
        bad = np.full(LENGTH, 180_000, dtype=np.uint32)
        np.save(tmp_path / "bad.npy", bad)
        cl = []
        for u in range(1, n + 1):
            extra = (
                ["--input", str(tmp_path / "bad.npy"), "--bits", str(spec.bits)]
                if u == n
                else [
                    "--input",
                    str(tmp_path / "f.npy"),
                    "--clip",
                    str(clip),
                    "--value-bits",
                    str(vbits),
                    "--max-clients",
                    str(n),
                ]
            )
            cl.append(
                _popen_cli(
                    "client",
                    "--server",
                    f"127.0.0.1:{port}",
                    "--certs",
                    str(ca["dir"]),
                    "--id",
                    str(u),
                    *extra,
                )
            )
        _join(serve, cl, serve_rc=1, clients_ok=False)
    finally:
        _stop(serve)
    assert not out.exists()
    rep = json.loads((tmp_path / "report.json").read_text())["rounds"][0]
    assert rep["aborted"] is True and rep["out"] is None
    assert "not a sum of valid encodings" in rep["abort_reason"]


def test_cli_float_options_are_checked_before_connecting(
    ca: dict[str, Path], tmp_path: Path
) -> None:
    """Bad float input or options fail with a clear usage error and contact no server."""
    np.save(tmp_path / "f.npy", np.array([0.5, np.nan]))
    np.save(tmp_path / "g.npy", np.array([0.5, 0.25]))
    np.save(tmp_path / "i.npy", np.array([1, 2], dtype=np.uint32))
    base = ["client", "--server", "127.0.0.1:9", "--certs", str(ca["dir"]), "--id", "1"]
    cases = {
        "g.npy": ([], "needs --clip, --value-bits, --max-clients"),
        "i.npy": (["--clip", "1"], "apply to float input only"),
        "f.npy": (["--clip", "1", "--value-bits", "8", "--max-clients", "3"], "NaN"),
    }
    for name, (extra, msg) in cases.items():
        r = subprocess.run(
            _cli(*base, "--input", str(tmp_path / name), *extra, "--connect-timeout", "1"),
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=60,
        )
        assert r.returncode != 0 and msg in r.stderr, (name, r.stderr)
        assert "could not connect" not in r.stderr  # refused before any connection


@pytest.mark.long
def test_long_randomized_crash_rounds_never_give_a_wrong_sum(tmp_path: Path) -> None:
    """>= 200 rounds, 5-20% of the clients SIGKILLed at random points: 0 wrong sums."""
    from secagg.net.simulate import issue_certs, simulate_net

    rounds = int(os.environ.get("SECAGG_NET_LONG_ROUNDS", "200"))
    n = 10
    cdir = issue_certs(tmp_path / "certs", range(1, n + 1))
    wrong = aborted = completed = 0
    for i in range(rounds):
        crash = [0.05, 0.1, 0.15, 0.2][i % 4]
        secagg_plus = i % 2 == 1
        rep = simulate_net(
            clients=n,
            length=300,
            crash=max(crash, 1 / n),
            seed=1000 + i,
            phase_timeout=3.0,
            join_timeout=20.0,
            client_procs=2,
            certs_dir=cdir,
            measure_memory=False,
            protocol=ProtocolKind.SECAGG_PLUS if secagg_plus else ProtocolKind.SECAGG,
            # every third round a threshold so high that two crashes abort the round
            threshold=(4 if secagg_plus else 8) if i % 3 == 0 else None,
            neighbors=4 if secagg_plus and i % 3 == 0 else None,
        )
        if rep["aborted"]:
            aborted += 1
        elif rep["exact"]:
            completed += 1
        else:
            wrong += 1
    print(f"net crash rounds: {rounds}, completed {completed}, aborted {aborted}, wrong {wrong}")
    assert wrong == 0
    assert completed + aborted == rounds
    assert aborted > 0 and completed > 0  # both outcomes were exercised


# -- the multi-loop server: I/O loops in threads around one control loop ----------------------


def test_close_joins_every_server_thread(ca: dict[str, Path]) -> None:
    before = set(threading.enumerate())
    server = NetServer(ssl_context=server_context(ca["dir"]), io_threads=3)
    server.start()
    started = {t.name for t in set(threading.enumerate()) - before}
    assert started == {"secagg-net-server", "secagg-net-io-0", "secagg-net-io-1", "secagg-net-io-2"}
    server.close()
    assert not {t for t in set(threading.enumerate()) - before if t.is_alive()}
    with pytest.raises(ParameterError):
        NetServer(ssl_context=server_context(ca["dir"]), io_threads=0)


def test_upload_slots_are_shared_by_the_io_loops() -> None:
    """At most n holders over loops in several threads; a release from any thread hands
    the slot to the oldest waiter; a waiter cancelled before or after the hand-over
    gives nothing up twice and loses no slot."""
    import concurrent.futures

    from secagg.net.server import _Conn, _Slots

    slots = _Slots(2)
    loops = [asyncio.new_event_loop() for _ in range(3)]
    threads = [threading.Thread(target=lp.run_forever) for lp in loops]
    for t in threads:
        t.start()
    try:
        conns = [_Conn(i, None, None, loops[i % 3]) for i in range(40)]  # type: ignore[arg-type]
        holders: set[int] = set()
        peak = [0]
        lock = threading.Lock()

        async def hold(c: _Conn) -> None:
            await slots.acquire(c)
            with lock:
                holders.add(c.cid)
                peak[0] = max(peak[0], len(holders))
            await asyncio.sleep(0.002)
            with lock:
                holders.discard(c.cid)
            slots.release(c)

        futs = [asyncio.run_coroutine_threadsafe(hold(c), c.loop) for c in conns]
        for f in futs:
            f.result(20)
        assert peak[0] == 2 and slots._free == 2 and not slots._waiters

        def until(cond: Any) -> None:
            deadline = time.monotonic() + 5
            while not cond():
                assert time.monotonic() < deadline
                time.sleep(0.005)

        a, b, w, x = conns[:4]
        for c in (a, b):
            asyncio.run_coroutine_threadsafe(slots.acquire(c), c.loop).result(5)
        assert slots._free == 0 and a.holds_slot and b.holds_slot
        # cancelled while still waiting: it leaves the queue, nothing to give back
        fw = asyncio.run_coroutine_threadsafe(slots.acquire(w), w.loop)
        until(lambda: len(slots._waiters) == 1)
        fw.cancel()
        until(lambda: not slots._waiters)
        assert not w.holds_slot and slots._free == 0
        # cancelled after the hand-over, before it woke: the slot passes on
        box: dict[str, Any] = {}

        async def acquire_x() -> None:
            box["task"] = asyncio.current_task()
            await slots.acquire(x)

        fx = asyncio.run_coroutine_threadsafe(acquire_x(), x.loop)
        until(lambda: len(slots._waiters) == 1)

        def release_then_cancel() -> None:
            slots.release(b)  # x is handed the slot ...
            box["task"].cancel()  # ... and cancelled before it wakes

        x.loop.call_soon_threadsafe(release_then_cancel)
        with pytest.raises(concurrent.futures.CancelledError):
            fx.result(5)
        until(lambda: slots._free == 1)
        assert not x.holds_slot and not b.holds_slot
        slots.release(a)
        slots.release(a)  # a second release of the same holder gives nothing back
        assert slots._free == 2 and not slots._waiters
    finally:
        for lp, t in zip(loops, threads):
            lp.call_soon_threadsafe(lp.stop)
            t.join(5)
            lp.close()


def test_a_multi_loop_round_under_faults_is_exact(ca: dict[str, Path]) -> None:
    """Three I/O loops and one upload slot: uploads of clients on different loops take
    turns; a duplicate id, a frame over the limit and an upload that stalls (holding the
    slot) are each cut on their own loop; the sum over the others is exact."""
    ids = [1, 2, 3, 4, 5, 6, 7, 8]
    honest = [1, 2, 3, 4, 5, 6]
    length = 40_000  # 160 kB uploads: over LARGE_FRAME, each one needs the slot
    cfg = _config(ids, length=length)
    inputs = _inputs(ids, length)
    spoke, proceed, stalled = threading.Event(), threading.Event(), threading.Event()

    def hold(point: str) -> None:
        if point == "advertised":
            spoke.set()
            proceed.wait(5)

    def stall(point: str) -> None:
        if point == "upload:0":
            stalled.set()
            time.sleep(2.5)  # blocks this client's loop mid-frame: > idle timeout

    with NetRound(
        ca,
        cfg,
        honest,
        phase_timeout=6.0,
        idle=1.0,
        inputs=inputs,
        client_kwargs={3: {"checkpoint": hold}},
        server_kwargs={"io_threads": 3, "upload_slots": 1},
    ) as r:
        assert spoke.wait(5)
        dup = _raw(ca["dir"], r.addr, 3)
        assert _error_code_or_closed(dup) == ErrorCode.DUPLICATE
        dup.close()
        bad = _raw(ca["dir"], r.addr, 7)
        _hello(bad)
        bad.sendall(struct.pack(">IB", 10_000_000, FrameKind.MESSAGE) + b"\0" * 100)
        assert _error_code_or_closed(bad) == ErrorCode.TOO_LARGE
        bad.close()
        proceed.set()
        res = _run_stalling_client(r, ca, 8, inputs[8], stall, stream_chunk=8000)
    assert stalled.is_set()
    assert isinstance(res, (ConnectionLostError, TransportError)), res
    _assert_exact(r, set(honest))
    assert 7 in r.pool.cut and 8 in r.pool.cut
    assert 8 in r.outcome.sets["U2"] and 8 not in r.outcome.sets["U3"]
    assert len({c.loop for c in r.pool.conns.values()}) == 3  # dealt over every I/O loop
    assert all(not c.holds_slot for c in r.pool.conns.values())
    assert r.pool._slots._free == 1


def test_aborted_round_tells_the_clients(ca: dict[str, Path]) -> None:
    ids = [1, 2, 3, 4, 5]
    # only 2 of 5 clients come: fewer than t + 1 advertise keys -> a clean abort
    cfg = RoundConfig.create(
        session_id=os.urandom(32),
        clients=ids,
        bits=32,
        length=LENGTH,
        protocol=ProtocolKind.SECAGG,
        threshold=3,
    )
    with NetRound(ca, cfg, [1, 2], join_timeout=1.0) as r:
        pass
    assert r.outcome.aborted and r.outcome.result is None
    assert all(isinstance(v, AbortedError) for v in r.results.values()), r.results


@pytest.mark.slow
def test_bench_net_quick_reports_the_agreed_keys() -> None:
    from secagg.bench import net as net_bench

    r = net_bench.run(True)
    assert r["net_exact"] is True and r["processes_exact"] is True
    assert r["traced_run_exact"] is True
    for key in ("wall_ratio_net_over_processes", "tls_tcp_overhead", "server_traced_peak_mb"):
        assert isinstance(r[key], float), key
    assert 0 < r["tls_tcp_overhead"] < 0.5
    assert "TLS + framing" in net_bench.markdown(r)


@pytest.mark.parametrize(("name", "value", "needle"), [
    ("SECAGG_BENCH_NET_REPS", "x", "must be an integer"),
    ("SECAGG_BENCH_NET_REPS", "0", ">= 1"),
    ("SECAGG_BENCH_NET_N", "1", ">= 2"),
    ("SECAGG_BENCH_NET_M", "0", ">= 1"),
    ("SECAGG_BENCH_NET_CRASH_GROUP", "0", ">= 1"),
    ("SECAGG_BENCH_NET_IO", "two", "must be an integer"),
])
def test_bench_net_settings_are_checked_before_any_round(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str
) -> None:
    from secagg.bench import net as net_bench

    monkeypatch.setenv(name, value)
    with pytest.raises(ParameterError, match=needle) as info:
        net_bench.run(True)
    assert name in str(info.value)
