"""Federated text data: who holds which text, and batches of token windows.

Default corpus: the English documentation that ships with CPython
(``pydoc_data.topics.topics``, 79 topics, ~465 KB).  It is split **non-IID by
topic**: every topic belongs to exactly one client (topics are handed out largest
first to the client holding the least text, so the clients hold similar amounts of
*different* material).  When there are more clients than topics, the largest topic
is cut in two (at a line break) until there are enough pieces.

Held-out validation: the last ``val_fraction`` of every piece (cut at a line break)
never reaches a client; the validation loss is measured on it.

``--data DIR`` takes a user's UTF-8 text files instead, in one of two layouts:

* ``DIR/<client>/...``: one sub-folder per client (files found recursively);
* ``DIR/*``: plain files, split across clients like the topics above.

Batches are drawn with a seeded ``torch.Generator`` — which windows a client trains
on is not a secret.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._extras import require
from secagg.errors import ParameterError

__all__ = [
    "FederatedCorpus",
    "TextPiece",
    "TokenStream",
    "corpus_from_dir",
    "default_corpus",
    "load_corpus",
    "tokenize",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TextPiece:
    """A named text (a topic, a file, or a part of one)."""

    name: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FederatedCorpus:
    """Training text per client and the held-out validation text.

    Attributes
    ----------
    clients:
        ``clients[i]`` are the pieces client ``i + 1`` holds (never empty).
    validation:
        Held-out pieces (never given to a client).
    source:
        Where the text came from, for reports.
    """

    clients: tuple[tuple[TextPiece, ...], ...]
    validation: tuple[TextPiece, ...]
    source: str

    def __post_init__(self) -> None:
        if not self.clients:
            raise ParameterError("a corpus needs at least one client")
        for i, pieces in enumerate(self.clients):
            if not pieces or not any(p.text for p in pieces):
                raise ParameterError(f"client {i + 1} holds no text")
        if not any(p.text for p in self.validation):
            raise ParameterError("the validation split is empty")

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    def client_chars(self) -> list[int]:
        return [sum(len(p.text) for p in c) for c in self.clients]


def _cut_at_line(text: str, pos: int) -> int:
    """A cut position near ``pos`` on a line boundary (or ``pos`` if none is near)."""
    nl = text.rfind("\n", 0, pos)
    if nl > 0 and pos - nl < max(200, len(text) // 4):
        return nl + 1
    return pos


def _split_validation(
    pieces: Sequence[TextPiece], val_fraction: float
) -> tuple[list[TextPiece], list[TextPiece]]:
    train, val = [], []
    for p in pieces:
        cut = _cut_at_line(p.text, int(len(p.text) * (1.0 - val_fraction)))
        if 0 < cut < len(p.text):
            train.append(TextPiece(name=p.name, text=p.text[:cut]))
            val.append(TextPiece(name=p.name, text=p.text[cut:]))
        else:
            train.append(p)
    return train, val


def _ensure_pieces(pieces: list[TextPiece], n: int) -> list[TextPiece]:
    """Cut the largest piece in two until there are at least ``n`` non-trivial pieces."""
    pieces = [p for p in pieces if p.text]
    while len(pieces) < n:
        pieces.sort(key=lambda p: (-len(p.text), p.name))
        big = pieces[0]
        if len(big.text) < 2:
            raise ParameterError(f"not enough text to give each of {n} clients some")
        cut = _cut_at_line(big.text, len(big.text) // 2)
        if not 0 < cut < len(big.text):
            cut = len(big.text) // 2
        pieces[0:1] = [
            TextPiece(name=f"{big.name}#a", text=big.text[:cut]),
            TextPiece(name=f"{big.name}#b", text=big.text[cut:]),
        ]
    return pieces


def _assign_non_iid(pieces: list[TextPiece], n: int) -> tuple[tuple[TextPiece, ...], ...]:
    """Whole pieces to clients: largest first, to the client with the least text."""
    pieces = _ensure_pieces(pieces, n)
    buckets: list[list[TextPiece]] = [[] for _ in range(n)]
    sizes = [0] * n
    for p in sorted(pieces, key=lambda p: (-len(p.text), p.name)):
        i = min(range(n), key=lambda k: (sizes[k], k))
        buckets[i].append(p)
        sizes[i] += len(p.text)
    return tuple(tuple(sorted(b, key=lambda p: p.name)) for b in buckets)


def _check_split_args(num_clients: int, val_fraction: float) -> None:
    if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
        raise ParameterError("num_clients must be a positive integer")
    if not (isinstance(val_fraction, float | int) and 0.0 < val_fraction < 0.5):
        raise ParameterError("val_fraction must be in (0, 0.5)")


def default_corpus(num_clients: int = 16, *, val_fraction: float = 0.1) -> FederatedCorpus:
    """CPython's ``pydoc_data.topics``, split non-IID by topic over ``num_clients``.

    Raises
    ------
    ParameterError
        Bad ``num_clients`` / ``val_fraction``, or more clients than the text allows.
    """
    _check_split_args(num_clients, val_fraction)
    from pydoc_data.topics import topics  # ships with CPython

    pieces = [TextPiece(name=k, text=v) for k, v in sorted(topics.items())]
    train, val = _split_validation(pieces, val_fraction)
    return FederatedCorpus(
        clients=_assign_non_iid(train, num_clients),
        validation=tuple(val),
        source=f"pydoc_data.topics ({len(pieces)} topics, non-IID by topic)",
    )


def _read_texts(folder: Path) -> list[TextPiece]:
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ParameterError(f"{path} is not UTF-8 text") from exc
        if text:
            out.append(TextPiece(name=str(rel), text=text))
    return out


def corpus_from_dir(
    path: str | os.PathLike[str],
    num_clients: int | None = None,
    *,
    val_fraction: float = 0.1,
) -> FederatedCorpus:
    """A user's text files as a federated corpus.

    Parameters
    ----------
    path:
        Either a folder of sub-folders (one per client; the number of clients is the
        number of sub-folders) or a folder of files (split across ``num_clients``
        clients by file, like the default topics).
    num_clients:
        Required for the flat layout (default 16); for the sub-folder layout it must
        be ``None`` or equal to the number of sub-folders.
    val_fraction:
        Tail of every file held out for validation.

    Raises
    ------
    ParameterError
        Missing folder, no text, a non-UTF-8 file, files mixed with sub-folders at the
        top level, or a client count that does not match the sub-folders.
    """
    root = Path(path)
    if not root.is_dir():
        raise ParameterError(f"--data {str(root)!r} is not a directory")
    entries = [e for e in sorted(root.iterdir()) if not e.name.startswith(".")]
    subdirs = [e for e in entries if e.is_dir()]
    files = [e for e in entries if e.is_file()]
    if subdirs and files:
        raise ParameterError(
            f"{root} mixes files and sub-folders; use one sub-folder per client "
            "or only files"
        )
    if subdirs:
        if num_clients is not None and num_clients != len(subdirs):
            raise ParameterError(
                f"{root} has {len(subdirs)} client sub-folders but {num_clients} clients "
                "were requested"
            )
        _check_split_args(len(subdirs), val_fraction)
        clients, val_all = [], []
        for d in subdirs:
            texts = _read_texts(d)
            if not texts:
                raise ParameterError(f"client folder {d} holds no text")
            train, val = _split_validation(
                [TextPiece(name=f"{d.name}/{t.name}", text=t.text) for t in texts], val_fraction
            )
            clients.append(tuple(train))
            val_all.extend(val)
        return FederatedCorpus(
            clients=tuple(clients),
            validation=tuple(val_all),
            source=f"{root} (one sub-folder per client)",
        )
    n = 16 if num_clients is None else num_clients
    _check_split_args(n, val_fraction)
    texts = _read_texts(root)
    if not texts:
        raise ParameterError(f"{root} holds no text files")
    train, val = _split_validation(texts, val_fraction)
    return FederatedCorpus(
        clients=_assign_non_iid(train, n),
        validation=tuple(val),
        source=f"{root} ({len(texts)} files split across {n} clients)",
    )


def load_corpus(
    data_dir: str | os.PathLike[str] | None,
    num_clients: int | None,
    *,
    val_fraction: float = 0.1,
) -> FederatedCorpus:
    """:func:`corpus_from_dir` when ``data_dir`` is given, else :func:`default_corpus`."""
    if data_dir is not None:
        return corpus_from_dir(data_dir, num_clients, val_fraction=val_fraction)
    return default_corpus(16 if num_clients is None else num_clients, val_fraction=val_fraction)


@dataclass(frozen=True, slots=True)
class TokenStream:
    """One party's text as a single token array: ``BOS text EOS`` per piece."""

    tokens: npt.NDArray[np.int64]
    pad_id: int

    def __len__(self) -> int:
        return int(self.tokens.size)

    def random_batch(self, batch_size: int, seq_len: int, generator: Any) -> tuple[Any, Any]:
        """``batch_size`` windows of ``seq_len`` tokens at random offsets.

        Returns ``(input_ids, labels)`` torch tensors; labels are ``-100`` on padding
        (a stream shorter than ``seq_len`` is padded).
        """
        torch = require("torch", "train")
        toks = torch.from_numpy(self.tokens)
        n = toks.numel()
        if n >= seq_len:
            starts = torch.randint(0, n - seq_len + 1, (batch_size,), generator=generator)
            ids = torch.stack([toks[s : s + seq_len] for s in starts.tolist()])
            return ids, ids.clone()
        ids = torch.full((batch_size, seq_len), self.pad_id, dtype=torch.long)
        ids[:, :n] = toks
        labels = ids.clone()
        labels[:, n:] = -100
        return ids, labels

    def eval_windows(self, seq_len: int, max_windows: int) -> tuple[Any, Any]:
        """Non-overlapping windows, evenly spread, at most ``max_windows`` of them."""
        torch = require("torch", "train")
        n = self.tokens.size
        count = max(1, n // seq_len)
        picks = np.unique(np.linspace(0, count - 1, num=min(count, max_windows)).astype(np.int64))
        ids = torch.full((len(picks), seq_len), self.pad_id, dtype=torch.long)
        labels = torch.full((len(picks), seq_len), -100, dtype=torch.long)
        for row, w in enumerate(picks.tolist()):
            chunk = torch.from_numpy(self.tokens[w * seq_len : (w + 1) * seq_len])
            ids[row, : chunk.numel()] = chunk
            labels[row, : chunk.numel()] = chunk
        return ids, labels


def tokenize(pieces: Sequence[TextPiece], tokenizer: Any) -> TokenStream:
    """Concatenate ``BOS + encode(text) + EOS`` over ``pieces``."""
    parts: list[int] = []
    for p in pieces:
        if p.text:
            parts.append(tokenizer.bos_id)
            parts.extend(tokenizer.encode(p.text))
            parts.append(tokenizer.eos_id)
    if not parts:
        raise ParameterError("nothing to tokenize")
    return TokenStream(np.asarray(parts, dtype=np.int64), int(tokenizer.pad_id))
