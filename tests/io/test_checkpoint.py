import pickle

import pytest
import torch

from ppl_vae.io import checkpoint
from ppl_vae.errors import UsageError


class Evil:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_round_trip_keeps_tensors_and_plain_data(tmp_path):
    path = tmp_path / "checkpoint.pt"
    state = {"epoch": 3, "params": {"w": torch.randn(3, 2)}, "rng": checkpoint.rng_state(), "config": {"a": [1, 2]}}
    checkpoint.save(path, state)
    loaded = checkpoint.load(path)
    assert loaded["epoch"] == 3 and loaded["config"] == {"a": [1, 2]}
    assert torch.equal(loaded["params"]["w"], state["params"]["w"])
    before = torch.rand(3)
    checkpoint.set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), before)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint at all", "corrupt"),
    (None, "not a ppl-vae checkpoint"),  # a torch file of someone else's
    ("pickle", "corrupt"),  # an arbitrary pickle: weights_only refuses to run it
    ("version", "version"),
])
def test_bad_checkpoints_are_refused(tmp_path, content, message):
    path = tmp_path / "checkpoint.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)
    elif content == "pickle":
        path.write_bytes(pickle.dumps({"format": checkpoint.FORMAT, "x": Evil()}))
    elif content == "version":
        torch.save({"format": checkpoint.FORMAT, "version": 999}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        checkpoint.load(path)


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"epoch": 1, "params": {"w": torch.randn(100)}})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UsageError, match="corrupt"):
        checkpoint.load(path)


def test_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"epoch": 1})
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        checkpoint.save(path, {"epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
