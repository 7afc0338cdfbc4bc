import os
import struct

import numpy as np
import pyro
import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


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


def write_idx(path: str, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format of the MNIST files (magic 0x08 = unsigned byte)."""
    array = np.asarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.tobytes())


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


def exact_guide(ppca):
    from ppl_vae.guides.linear import LinearGaussian

    return LinearGaussian(ppca.x_dim, ppca.latent_dim).to(ppca.W.dtype).set_exact(ppca)


def small_ppca(seed=0, x_dim=5, latent_dim=2, sigma=0.7):
    from ppl_vae.models.ppca import PPCA

    g = torch.Generator().manual_seed(seed)
    W = torch.randn(x_dim, latent_dim, generator=g, dtype=torch.float64)
    mu = torch.randn(x_dim, generator=g, dtype=torch.float64)
    return PPCA(x_dim, latent_dim, W=W, mu=mu, sigma=sigma).double()


def run_cli(argv, capsys):
    """Run ``ppl-vae argv`` in-process; returns (exit code, stdout, stderr)."""
    from ppl_vae.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err):
    """The single line a bad input prints on stderr, after checking exit code 2 and no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


os.environ.setdefault("MPLBACKEND", "Agg")


def train_tiny_run(path, latent_dim=2, epochs=3):
    """Train a tiny VAE on digits with `ppl-vae train` into ``path``; returns the path."""
    from ppl_vae.cli import main

    assert main(["train", "--out", str(path), "--epochs", str(epochs), "--hidden", "32",
                 "--latent-dim", str(latent_dim), "--no-progress"]) == 0
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory with a 2-D latent VAE trained for 3 epochs on digits (read-only: copy to change it)."""
    return train_tiny_run(tmp_path_factory.mktemp("runs") / "tiny2d")
