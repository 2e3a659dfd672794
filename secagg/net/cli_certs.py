"""``secagg certs init DIR`` / ``secagg certs issue DIR --client ID ... | --server HOST``.

A development CA for the network runtime (``secagg.net.certs``).  Private keys
are written with mode 0600 and never overwritten.  ``issue --client`` also
writes the client's Ed25519 identity key (``client-<ID>.identity``, 0600, raw
32 bytes) and its public half (``client-<ID>.identity.pub``, hex) for
malicious-mode rounds.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    p_init = sub.add_parser("init", help="create a development CA in DIR")
    p_init.add_argument("dir", metavar="DIR")
    p_init.add_argument("--days", type=int, default=3650)
    p_issue = sub.add_parser("issue", help="issue client and/or server certificates")
    p_issue.add_argument("dir", metavar="DIR")
    p_issue.add_argument(
        "--client",
        type=str,
        action="append",
        default=[],
        metavar="ID",
        help="client id (repeatable; a range like 1-100 is allowed)",
    )
    p_issue.add_argument("--server", default=None, metavar="HOST", help="server DNS name or IP")
    p_issue.add_argument("--days", type=int, default=365)


def _ids(specs: list[str]) -> list[int]:
    from secagg.errors import ParameterError

    out: list[int] = []
    for s in specs:
        try:
            if "-" in s:
                a, b = (int(x) for x in s.split("-", 1))
                out += list(range(a, b + 1))
            else:
                out.append(int(s))
        except ValueError:
            raise ParameterError(f"bad client id {s!r}") from None
    return out


def run(args: argparse.Namespace) -> int:
    from secagg.errors import ParameterError
    from secagg.net import certs

    if args.certs_command == "init":
        path = certs.init_ca(args.dir, days=args.days)
        print(f"CA written: {path} (key {path.with_suffix('.key')}, mode 0600)")
        return 0
    ids = _ids(args.client)
    if not ids and args.server is None:
        raise ParameterError("give --client ID and/or --server HOST")
    if args.server is not None:
        crt, _ = certs.issue_server(args.dir, args.server, days=args.days)
        print(f"server certificate: {crt}")
    for u in ids:
        crt, _ = certs.issue_client(args.dir, u, days=args.days)
        certs.issue_identity(args.dir, u)
        print(f"client {u}: {crt}")
    return 0
