import os

import numpy as np
import pyro
import pytest
import torch

from helpers import train_tiny_run, write_idx

# one thread per pytest-xdist worker (`make test` runs two on the 2-core machine), else at most two
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


@pytest.fixture(scope="session", autouse=True)
def trust_file(tmp_path_factory):
    """The files the tests run with --pair are trusted in a file of this session's, never the user's own."""
    os.environ["PPL_VAE_TRUST_FILE"] = str(tmp_path_factory.getbasetemp() / "trusted.json")


@pytest.fixture(autouse=True)
def fresh_pyro():
    """Every test starts from an empty param store and a fixed seed."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def digits():
    from ppl_vae import data

    return data.load("digits", binarize="dynamic")




@pytest.fixture
def tiny_mnist(tmp_path):
    """A 20-train / 10-test MNIST in torchvision's raw layout: root/MNIST/raw/*-ubyte."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        write_idx(str(raw / f"{prefix}-images-idx3-ubyte"), rng.randint(0, 256, size=(n, 28, 28)))
        write_idx(str(raw / f"{prefix}-labels-idx1-ubyte"), rng.randint(0, 10, size=n))
    return tmp_path










os.environ.setdefault("MPLBACKEND", "Agg")




@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory with a 2-D latent VAE trained for 3 epochs on digits (read-only: copy to change it)."""
    return train_tiny_run(tmp_path_factory.mktemp("runs") / "tiny2d")
