"""What several test files share (no test file imports another, or conftest)."""

import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from ppl_vae import registry
from ppl_vae.config import Config
from ppl_vae.guides.gaussian import DiagonalGaussian
from ppl_vae.guides.linear import LinearGaussian
from ppl_vae.models.ppca import PPCA
from ppl_vae.models.vae import VAE

ROOT = Path(__file__).resolve().parents[1]


def config(**settings) -> Config:
    """A resolved run configuration: the defaults of ppl_vae.config, ``settings``, the model's own defaults."""
    return registry.resolve(Config.from_dict(settings))


def trainer(model, guide, data, objective="elbo", *, particles=1, step=None, **training):
    """A Trainer on the CPU with no run directory, ``training`` settings over TrainingConfig's defaults."""
    from ppl_vae.config import TrainingConfig
    from ppl_vae.inference import objectives
    from ppl_vae.inference.trainer import Trainer

    return Trainer(model, guide, data, objectives.make(objective, particles=particles), TrainingConfig(**training),
                   device="cpu", progress=False, step=step)


def write_idx(path: str, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format of the MNIST files (magic 0x08 = unsigned byte)."""
    array = np.asarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.tobytes())


def exact_guide(ppca):

    return LinearGaussian(ppca.x_dim, ppca.latent_dim).to(ppca.W.dtype).set_exact(ppca)


def small_ppca(seed=0, x_dim=5, latent_dim=2, sigma=0.7):

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


def train_tiny_run(path, latent_dim=2, epochs=3):
    """Train a tiny VAE on digits with `ppl-vae train` into ``path``; returns the path."""
    from ppl_vae.cli import main

    assert main(["train", "--out", str(path), "--epochs", str(epochs), "--hidden", "32",
                 "--latent-dim", str(latent_dim), "--no-progress"]) == 0
    return path


def setup(n=4, seed=0):
    ppca = small_ppca(seed)
    x = ppca.marginal().sample((n,)).detach()
    return ppca, wrong_guide(ppca), x


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def log_w_plain(ppca, guide, x, shape):
    """log w with z ~ q drawn by plain torch, shape [*shape, N]; differentiable (reparameterized)."""
    q = guide.dist(x)
    z = q.rsample(shape)
    prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    lik = torch.distributions.Normal(z @ ppca.W.T + ppca.mu, ppca.sigma).log_prob(x).sum(-1)
    return prior + lik - q.log_prob(z)


def exact_elbo(ppca, guide, x):
    """(Σ_n ELBO, ∇ Σ_n ELBO) in closed form."""
    q = guide.dist(x)
    total = ppca.elbo(x, q.mean, torch.diag_embed(q.variance)).sum()
    return total.detach(), flat(torch.autograd.grad(total, params(ppca, guide)))


def mean_se(samples):
    return samples.mean(0), samples.std(0) / math.sqrt(samples.shape[0])


def pair(ds, seed=0):
    torch.manual_seed(seed)
    return VAE(ds.x_dim, latent_dim=4, hidden=(64,)), DiagonalGaussian(ds.x_dim, latent_dim=4, hidden=(64,))


def run(*argv):
    done = subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def wrong_guide(ppca):
    """A diagonal Gaussian q(z | x) = N(A x + b + 0.4, diag(1.3 σ_post)²): close to the posterior, not equal."""
    A, b, cov = ppca.posterior_params()
    g = LinearGaussian(ppca.x_dim, ppca.latent_dim, full_cov=False).double()
    with torch.no_grad():
        g.A.copy_(A)
        g.b.copy_(b + 0.4)
        g.log_diag.copy_(cov.diagonal().sqrt().log() + math.log(1.3))
    return g


def params(ppca, guide):
    return [*guide.parameters(), *ppca.parameters()]


def correlated_ppca():
    """(the digits as grey levels, PPCA fitted to them with the columns of W made nearly parallel): p(z | x)
    is Gaussian with correlation −0.83, so a diagonal q's gap log p(x) − ELBO stays ≥ −½ log(1 − ρ²) = 0.59."""
    from ppl_vae import data as datasets

    data = datasets.load("digits", binarize="none")
    ppca = PPCA(64, 2).fit_closed_form(data.x_train)
    with torch.no_grad():
        ppca.W.copy_(ppca.W @ torch.tensor([[1.0, 0.9], [0.0, 0.45]]))
    _, _, cov = ppca.posterior_params()
    assert cov[0, 1] / cov.diagonal().prod().sqrt() < -0.8
    return data, ppca


def two_layer_pair(x_dim: int = 6, bits: int = 3):
    """A two-layer sigmoid belief network and its guide q(b₁ | x) q(b₂ | b₁), small enough to enumerate."""
    from ppl_vae.guides.discrete import TwoLayerBernoulli
    from ppl_vae.models.discrete import TwoLayerSBN

    return TwoLayerSBN(x_dim, latent_dim=bits, hidden=(4,)), TwoLayerBernoulli(x_dim, latent_dim=bits, hidden=(4,))


def exact_two_layer_elbo(model, guide, x) -> torch.Tensor:
    """Σ_{b₁, b₂} q(b₁ | x_n) q(b₂ | b₁) [log p(b₂) + log p(b₁ | b₂) + log p(x_n | b₁) − log q] per point, over
    all 2^{2D} values of (b₁, b₂): the two-layer SBN's exact ELBO, differentiable in θ and φ."""
    import itertools

    from torch.distributions import Bernoulli

    d = model.latent_dim
    both = torch.tensor(list(itertools.product([0.0, 1.0], repeat=2 * d)), dtype=x.dtype)[:, None]  # [S, 1, 2D]
    b1, b2 = both[..., :d], both[..., d:]
    log_q = guide.dist(x).log_prob(b1) + Bernoulli(logits=guide.upper(b1)).log_prob(b2).sum(-1)     # [S, N]
    log_p = (model.prior(x).log_prob(b2) + Bernoulli(logits=model.upper(b2)).log_prob(b1).sum(-1)
             + model.likelihood_dist(b1.expand(-1, x.shape[0], -1)).log_prob(x))
    return (log_q.exp() * (log_p - log_q)).sum(0)
