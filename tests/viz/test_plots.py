"""Figures of a trained run: each one a PNG of its fixed pixel size; the latent statistics behind them."""

import shutil

import matplotlib.image
import pyro
import pyro.distributions as dist
import pytest
import torch

from helpers import run_cli, train_tiny_run
from ppl_vae.viz import figures
from ppl_vae.evaluation import latents
from ppl_vae.viz import plots
from ppl_vae.errors import UsageError
from ppl_vae.run import load as load_run


def assert_png(path, name):
    image = matplotlib.image.imread(path)
    width, height = plots.SIZES[name]
    assert image.shape[:2] == (round(height * figures.DPI), round(width * figures.DPI))
    assert image[..., :3].std() > 0.05  # something was drawn


@pytest.fixture(scope="module")
def run3d(tmp_path_factory):
    """A 3-D latent run: the latent-means figure becomes a PCA projection, the manifold walks two units."""
    return load_run(str(train_tiny_run(tmp_path_factory.mktemp("runs") / "tiny3d", latent_dim=3, epochs=2)), "cpu")


OWN_MODELS = {"latent_path": "lgssm", "canvas": "draw", "boxes": "air"}  # figures of one kind of model
VAE_FIGURES = [f for f in plots.FIGURES if f.name not in OWN_MODELS]


@pytest.mark.parametrize("figure", VAE_FIGURES, ids=[f.name for f in VAE_FIGURES])
def test_every_figure_is_a_png_of_its_size(figure, tiny_run, tmp_path):
    run = load_run(str(tiny_run), "cpu")
    path = figure.draw(run, str(tmp_path / f"{figure.name}.png"), None)
    assert_png(path, figure.name)


@pytest.mark.parametrize("name, model", OWN_MODELS.items())
def test_a_figure_of_another_model_is_skipped_with_one_sentence(name, model, tiny_run, tmp_path):
    run = load_run(str(tiny_run), "cpu")
    drawn, skipped = plots.draw_all(run, str(tmp_path), [name])
    assert not drawn and f"(the {model} model" in skipped[name] and skipped[name].endswith(".")


def test_three_dim_latents_use_pca_and_the_two_most_active_units(run3d, tmp_path):
    pyro.clear_param_store()
    drawn, skipped = plots.draw_all(run3d, str(tmp_path), ["latent_means", "manifold", "kl_units"])
    assert not skipped
    for name, path in drawn.items():
        assert_png(path, name)


def test_active_units_and_kl_match_a_direct_computation(tiny_run):
    run = load_run(str(tiny_run), "cpu")
    x = run.data.x_test
    stats = latents.summary(run.model, run.guide, x)
    with torch.no_grad():
        loc, scale = run.guide(x)
    variance = ((loc - loc.mean(0)) ** 2).sum(0) / (x.shape[0] - 1)
    assert stats["active_units"] == int((variance > 0.01).sum())
    assert stats["activity"] == pytest.approx(variance.tolist(), rel=1e-5)
    kl = 0.5 * (loc ** 2 + scale ** 2 - 1 - 2 * scale.log())  # KL(N(μ, σ²) ‖ N(0, 1)) per unit
    assert stats["kl_per_dim"] == pytest.approx(kl.mean(0).tolist(), rel=1e-4)
    assert stats["kl_mean"] == pytest.approx(kl.sum(1).mean().item(), rel=1e-4)


def test_monte_carlo_kl_agrees_with_the_closed_form():
    """A full-covariance q against a factorized prior has no registered KL: the Monte-Carlo
    estimate must agree with the Gaussian closed form within 4 standard errors."""
    torch.manual_seed(0)
    L = torch.tensor([[1.0, 0.0], [0.6, 0.5]])
    q = dist.MultivariateNormal(torch.tensor([[0.5, -1.0]]), scale_tril=L)
    p = dist.Normal(torch.zeros(2), 1.0).to_event(1)
    exact = torch.distributions.kl_divergence(q, dist.MultivariateNormal(torch.zeros(2), torch.eye(2)))
    samples = 4000
    estimate = latents.kl(q, p, samples=samples)
    z = q.sample((samples,))
    se = (q.log_prob(z) - p.log_prob(z)).std() / samples ** 0.5
    assert abs(estimate - exact).item() < 4 * se.item()


def test_pairs_without_helper_methods_are_read_from_their_traces(tiny_run):
    """Plain Pyro callables (no dist/prior/decode methods) give the same q, p and E[x | z]."""
    run = load_run(str(tiny_run), "cpu")
    x = run.data.x_test[:7]
    model, guide = run.model.model, run.guide.guide  # bound methods: only the traces are available
    assert torch.allclose(latents.posterior(guide, x).mean, run.guide.dist(x).mean)
    z = latents.posterior_means(run.guide, x)
    assert torch.allclose(latents.decode(model, z, x.shape[1]), run.model.decode(z))
    assert latents.prior(model, x).event_shape == (2,)


def test_figures_take_the_latent_and_observed_sites_by_what_they_are_not_by_name(digits, tmp_path):
    """vae.py's names (latent site "latent", observed site "obs") draw; two latent sites, neither "z", are
    refused with one sentence naming them."""
    def model(x, idx=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("obs", dist.Bernoulli(logits=z.sum(-1, keepdim=True).expand(-1, x.shape[1])).to_event(1), obs=x)

    def guide(x, idx=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("latent", dist.Normal(x.new_zeros(2), 1.0).to_event(1))

    plots.reconstructions(model, guide, digits, str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").exists()

    def two(x, idx=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("a", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("b", dist.Normal(x.new_zeros(2), 1.0).to_event(1))

    with pytest.raises(UsageError, match="has latent sites 'a', 'b', and these figures"):
        plots.reconstructions(model, two, digits, str(tmp_path / "two.png"))
    assert not (tmp_path / "two.png").exists()


def test_plot_command_writes_the_figures_asked_for(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    code, out, err = run_cli(["plot", run, "--only", "reconstructions,training"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (run / "figures").iterdir()) == ["reconstructions.png", "training.png"]
    assert out.count("wrote") == 2
    code, _, err = run_cli(["plot", tmp_path / "missing"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err


def test_mosaic_places_each_image_in_its_cell():
    images = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4) / 24
    grid = figures.mosaic(images.numpy(), (1, 2, 2), gap=1, fill=-1)
    assert grid.shape == (2 * 3 - 1, 3 * 3 - 1)
    assert (grid[3:5, 6:8].ravel() == images[1, 2].numpy()).all()
    assert (grid[2] == -1).all() and (grid[:, 2] == -1).all()
