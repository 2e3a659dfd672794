"""Corpus splitting: non-IID by topic, held-out validation, both --data layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from secagg.errors import ParameterError
from secagg.train.data import (
    FederatedCorpus,
    TextPiece,
    corpus_from_dir,
    default_corpus,
    load_corpus,
    tokenize,
)
from secagg.train.model import ByteTokenizer


def _topic(name: str) -> str:
    return name.split("#")[0]


def test_default_corpus_is_non_iid_by_topic() -> None:
    from pydoc_data.topics import topics

    c = default_corpus(16)
    assert c.num_clients == 16
    owners: dict[str, set[int]] = {}
    for i, pieces in enumerate(c.clients):
        assert pieces
        for p in pieces:
            owners.setdefault(_topic(p.name), set()).add(i)
    # every topic lives with exactly one client (no topic is cut at 16 clients)
    assert set(owners) == set(topics)
    assert all(len(v) == 1 for v in owners.values())
    # sizes roughly balanced, but the topics differ
    sizes = c.client_chars()
    assert min(sizes) > 0
    names = [{_topic(p.name) for p in pieces} for pieces in c.clients]
    assert all(a.isdisjoint(b) for i, a in enumerate(names) for b in names[i + 1 :])


def test_validation_is_held_out_and_nothing_is_lost() -> None:
    from pydoc_data.topics import topics

    c = default_corpus(8)
    train = {p.name: p.text for pieces in c.clients for p in pieces}
    val = {p.name: p.text for p in c.validation}
    total_val = sum(len(t) for t in val.values())
    total = sum(len(t) for t in topics.values())
    assert 0.05 * total < total_val < 0.15 * total
    for name, text in topics.items():
        assert train[name] + val.get(name, "") == text  # a prefix trains, the tail validates


def test_more_clients_than_topics_cuts_topics() -> None:
    c = default_corpus(100)
    assert c.num_clients == 100
    assert all(any(p.text for p in pieces) for pieces in c.clients)


@pytest.mark.parametrize("bad", [0, -1, True])
def test_bad_client_counts(bad: int) -> None:
    with pytest.raises(ParameterError):
        default_corpus(bad)


def test_data_dir_one_subfolder_per_client(tmp_path: Path) -> None:
    texts = [("alice", "alpha text\n" * 40), ("bob", "beta text\n" * 50), ("carol", "gamma\n" * 30)]
    for name, text in texts:
        (tmp_path / name / "notes").mkdir(parents=True)
        (tmp_path / name / "notes" / "a.txt").write_text(text, encoding="utf-8")
    (tmp_path / ".hidden").mkdir()
    c = corpus_from_dir(tmp_path)
    assert c.num_clients == 3
    owners = [p.name.split("/")[0] for pieces in c.clients for p in pieces]
    assert owners == ["alice", "bob", "carol"]
    assert "alpha" in c.clients[0][0].text and "beta" in c.clients[1][0].text
    assert c.validation
    with pytest.raises(ParameterError, match="3 client sub-folders"):
        corpus_from_dir(tmp_path, 5)
    assert load_corpus(tmp_path, 3).num_clients == 3


def test_data_dir_flat_files_split_across_clients(tmp_path: Path) -> None:
    for k in range(6):
        (tmp_path / f"f{k}.txt").write_text(f"file {k} line\n" * (20 + k), encoding="utf-8")
    c = corpus_from_dir(tmp_path, 3)
    assert c.num_clients == 3
    files = [p.name for pieces in c.clients for p in pieces]
    assert sorted(files) == [f"f{k}.txt" for k in range(6)]
    assert "(6 files split across 3 clients)" in c.source


def test_data_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(ParameterError):
        corpus_from_dir(tmp_path / "missing")
    with pytest.raises(ParameterError, match="no text"):
        corpus_from_dir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x\n" * 30)
    (tmp_path / "loose.txt").write_text("y\n" * 30)
    with pytest.raises(ParameterError, match="mixes"):
        corpus_from_dir(tmp_path)
    (tmp_path / "loose.txt").unlink()
    (tmp_path / "a" / "bin.dat").write_bytes(b"\xff\xfe\x00\x80")
    with pytest.raises(ParameterError, match="UTF-8"):
        corpus_from_dir(tmp_path)


def test_corpus_validation_rejects_empty_clients() -> None:
    with pytest.raises(ParameterError):
        FederatedCorpus(clients=((),), validation=(TextPiece(name="v", text="x"),), source="t")
    with pytest.raises(ParameterError):
        FederatedCorpus(
            clients=((TextPiece(name="a", text="x"),),), validation=(), source="t"
        )


def test_tokenize_and_batches() -> None:
    import torch

    tok = ByteTokenizer()
    s = tokenize([TextPiece(name="a", text="héllo"), TextPiece(name="b", text="")], tok)
    assert s.tokens.tolist() == [256, *"héllo".encode(), 257]
    ids, labels = s.random_batch(3, 4, torch.Generator().manual_seed(0))
    assert ids.shape == (3, 4) and bool((ids == labels).all())
    ids, labels = s.random_batch(2, 20, torch.Generator().manual_seed(0))  # shorter than window
    assert bool((labels[:, len(s) :] == -100).all()) and bool((ids[:, len(s) :] == 258).all())
    ev_ids, ev_labels = s.eval_windows(3, 10)
    assert ev_ids.shape[1] == 3 and ev_labels.shape == ev_ids.shape
