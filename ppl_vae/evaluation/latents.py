"""What a trained pair says about its latent space: q(z | x), p(z), E[x | z], KL and active units.

The figures, the report, outlier scores and imputation all read a run through these few
functions, which work for any model/guide pair with one latent site, whatever its name (the only
latent site, or ``z`` among several; vae.py's ``latent``), and one observed site (the only one, or
``x``; vae.py's ``obs``); a pair that takes named inputs with each image, such as labels, gets the
rows' ``inputs``:

- q_φ(z | x): ``guide.dist(x)`` when the guide has it, else the distribution at site ``z`` of
  a trace of the guide;
- p(z): ``model.prior(x)``, else the distribution at site ``z`` of a trace of the model;
- p_θ(x | z): ``model.likelihood_dist(z)``, else the distribution at site ``x`` of a trace of
  the model with ``z`` conditioned; E[x | z] is its mean.

A pair that cannot provide one of these (no site ``z``, a guide that only knows training
points, ...) raises a :class:`UsageError` naming what is missing, so a command fails with one
sentence instead of a traceback.

Quantities, for test points x_n:

- the posterior mean E_q[z | x] (``.mean`` when the family has one, else Monte-Carlo);
- KL(q(z | x) ‖ p(z)) per data point: analytic when registered with
  ``torch.distributions.kl_divergence``, else the Monte-Carlo mean of log q(z | x) − log p(z);
- KL of the marginals q(z_u | x) and p(z_u) per latent dimension u, when both are Gaussian
  (then analytic; the per-dimension KLs sum to the total for a diagonal q);
- the activity A_u = Cov_x(E_q[z_u | x]) over the test set; unit u is active when
  A_u > 0.01 (Burda, Grosse & Salakhutdinov 2016, section 5.2).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.distributions import Independent, kl_divergence

from ppl_vae.data import split
from ppl_vae.errors import UsageError, user_code
from ppl_vae.pair import as_pyro_callable, with_idx

SITE = "z"
ACTIVE_THRESHOLD = 0.01  # Burda et al. 2016
CHUNK = 2048  # test points per forward pass


def _name(obj) -> str:
    return type(getattr(obj, "__self__", obj)).__name__


def _trace(fn, x, what: str, condition=None, inputs=None):
    """A trace of the Pyro program ``fn(x, **inputs)``; any failure becomes one UsageError sentence."""
    if condition is not None:
        fn = poutine.condition(fn, data=condition)
    with user_code(f"{_name(fn)} could not be run on test images to get {what}",
                   "; this figure needs a pair whose guide works on new data."):
        return poutine.trace(fn).get_trace(x, **(inputs or {}))


@torch.no_grad()
def site_names(model, guide, x: torch.Tensor, inputs: dict | None = None) -> tuple[str, str]:
    """(the latent site z is, the observed site x is) in the pair's own names, from traces on one point."""
    one = {k: v[:1] for k, v in (inputs or {}).items()}
    guide_fn, model_fn = (with_idx(as_pyro_callable(f, role)) for f, role in ((guide, "guide"), (model, "model")))
    latent = latent_name(_trace(guide_fn, x[:1], "q(z|x)", inputs=one), guide)
    return latent, observed_name(_trace(model_fn, x[:1], "p(x|z)", inputs=one), model, latent)


def _site(trace, site: str, what: str, owner):
    if site not in trace.nodes:
        sites = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
        raise UsageError(f"{_name(owner)} has no sample site {site!r} (it has {', '.join(sites) or 'none'}), "
                         f"which {what} needs; these figures cover models with one latent site 'z'.")
    return trace.nodes[site]["fn"]


def sites(trace, observed: bool) -> list[str]:
    return [name for name, site in trace.nodes.items() if site["type"] == "sample" and not site_is_subsample(site)
            and site["is_observed"] == observed]


def latent_name(trace, owner) -> str:
    """The latent site these quantities are of, whatever the program calls it: the program's only latent
    site (vae.py's ``latent``), or ``z`` among several; a UsageError naming them otherwise."""
    names = sites(trace, observed=False)
    if len(names) == 1 or SITE in names:
        return names[0] if len(names) == 1 else SITE
    raise UsageError(f"{_name(owner)} has latent sites {', '.join(map(repr, names)) or 'none'}, and these figures "
                     f"and numbers are of one latent site (the only one, or the one named 'z')")


def observed_name(trace, owner, given: str) -> str:
    """The observed site E[x | z] is of, besides the latent site ``given`` the trace was conditioned on: the
    program's only other observed site (vae.py's ``obs``), or ``x``."""
    names = [name for name in sites(trace, observed=True) if name != given]
    if len(names) == 1 or "x" in names:
        return names[0] if len(names) == 1 else "x"
    raise UsageError(f"{_name(owner)} observes {', '.join(map(repr, names)) or 'nothing'}, and E[x | z] is of one "
                     f"observed site (the only one, or the one named 'x')")


@torch.no_grad()
def posterior(guide, x: torch.Tensor, inputs: dict | None = None) -> dist.Distribution:
    """q_φ(z | x) (given the rows' named ``inputs``), batch shape [N], event shape [latent dim]."""
    if hasattr(guide, "dist") and not inputs:
        return guide.dist(x)
    fn = with_idx(as_pyro_callable(guide, "guide"))
    trace = _trace(fn, x, "q(z|x)", inputs=inputs)
    return _site(trace, latent_name(trace, guide), "q(z|x)", guide)


@torch.no_grad()
def prior(model, like: torch.Tensor, inputs: dict | None = None) -> dist.Distribution:
    """p(z); ``like`` is a batch of data [N, D] (only its device, dtype and size are used)."""
    if hasattr(model, "prior") and not inputs:
        return model.prior(like)
    fn = with_idx(as_pyro_callable(model, "model"))
    trace = _trace(fn, like, "p(z)", inputs=inputs)
    return _site(trace, latent_name(trace, model), "p(z)", model)


@torch.no_grad()
def likelihood(model, z: torch.Tensor, x_shape, inputs: dict | None = None) -> dist.Distribution:
    """p_θ(x | z) (given the rows' named ``inputs``) for a batch z [N, latent dim]: batch shape [N],
    event shape one data point's (``x_shape``: D, or the shape the program takes, e.g. (1, 28, 28))."""
    if hasattr(model, "likelihood_dist") and not inputs:
        return model.likelihood_dist(z)
    fn = with_idx(as_pyro_callable(model, "model"))
    like = z.new_zeros(z.shape[0], *torch.Size([x_shape] if isinstance(x_shape, int) else x_shape))
    name = latent_name(_trace(fn, like, "p(x|z)", inputs=inputs), model)
    trace = _trace(fn, like, "p(x|z)", condition={name: z}, inputs=inputs)
    others = [other for other in sites(trace, observed=False) if other != name]
    if others:  # e.g. M2's class y: E[x | z] would hold a y drawn at random from its prior
        raise UsageError(f"{_name(model)} has latent site{'s' if len(others) > 1 else ''} {', '.join(map(repr, others))} "
                         f"besides {name!r}, which p(x | z) would draw at random from the prior inside the figure; "
                         f"E[x | z] is drawn only for models with one latent site (pass the others as named inputs "
                         f"to hold them fixed).")
    return _site(trace, observed_name(trace, model, name), "p(x|z)", model)


@torch.no_grad()
def decode(model, z: torch.Tensor, x_shape, inputs: dict | None = None) -> torch.Tensor:
    """E[x | z] for z [N, latent dim] -> [N, D] (or [N, *x_shape] as the program gives it), in chunks."""
    if hasattr(model, "decode") and not inputs:
        return torch.cat([model.decode(zc) for zc in z.split(CHUNK)])
    return torch.cat([likelihood(model, zc, x_shape, ic).mean for zc, ic in split(z, inputs, CHUNK)])


def mean(q: dist.Distribution, samples: int = 256) -> torch.Tensor:
    """E_q[z], analytic when the family knows it, else the mean of ``samples`` draws."""
    try:
        return q.mean
    except NotImplementedError:
        return q.sample((samples,)).mean(0)


@torch.no_grad()
def posterior_means(guide, x: torch.Tensor, samples: int = 256, inputs: dict | None = None) -> torch.Tensor:
    """E_q[z | x_n] for every row of x -> [N, latent dim] (a latent of several event dims, e.g. one-hot
    categories [G, C], as one vector per point)."""
    return torch.cat([mean(posterior(guide, xc, ic), samples).flatten(1) for xc, ic in split(x, inputs, CHUNK)])


def _is_point_mass(q) -> bool:
    while isinstance(q, Independent):
        q = q.base_dist
    return isinstance(q, dist.Delta)


def kl(q: dist.Distribution, p: dist.Distribution, samples: int = 256) -> torch.Tensor:
    """KL(q ‖ p) per batch element: analytic if registered, else Monte-Carlo with ``samples`` draws."""
    if _is_point_mass(q):
        raise UsageError("KL(q(z|x) ‖ p(z)) is infinite for a point-mass guide (delta); "
                         "use a guide with a density, such as gaussian.")
    if p.batch_shape != q.batch_shape:  # a prior without the data's batch dim (Bernoulli's KL does not broadcast)
        p = p.expand(q.batch_shape)
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        z = q.sample((samples,))
        return (q.log_prob(z) - p.log_prob(z)).mean(0)


@torch.no_grad()
def kl_per_point(model, guide, x: torch.Tensor, samples: int = 256, inputs: dict | None = None) -> torch.Tensor:
    """KL(q(z | x_n) ‖ p(z)) for every row of x -> [N]."""
    return torch.cat([kl(posterior(guide, xc, ic), prior(model, xc, ic), samples)
                      for xc, ic in split(x, inputs, CHUNK)])


def normal_marginals(d: dist.Distribution):
    """(loc, scale) of the one-dimensional marginals of a Gaussian ``d``, or None if not Gaussian."""
    while isinstance(d, Independent):
        d = d.base_dist
    if isinstance(d, dist.Normal):
        return d.loc, d.scale
    if isinstance(d, dist.MultivariateNormal):
        return d.loc, d.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
    return None


@torch.no_grad()
def kl_per_dim(model, guide, x: torch.Tensor, inputs: dict | None = None) -> torch.Tensor | None:
    """Mean over x of KL(q(z_u | x) ‖ p(z_u)) for each latent dimension u -> [latent dim], or
    None when q or p has non-Gaussian marginals (e.g. a flow): then only the total is known."""
    totals = 0.0
    for xc, ic in split(x, inputs, CHUNK):
        q, p = normal_marginals(posterior(guide, xc, ic)), normal_marginals(prior(model, xc, ic))
        if q is None or p is None:
            return None
        (mq, sq), (mp, sp) = q, p
        kl_u = torch.log(sp / sq) + (sq ** 2 + (mq - mp) ** 2) / (2 * sp ** 2) - 0.5
        totals = totals + kl_u.sum(0)
    return totals / x.shape[0]


def activity(means: torch.Tensor) -> torch.Tensor:
    """A_u = Cov_x(E_q[z_u | x]) (the unbiased variance over data points) -> [latent dim]."""
    return means.var(0, unbiased=True)


@torch.no_grad()
def summary(model, guide, x: torch.Tensor, samples: int = 256, inputs: dict | None = None) -> dict:
    """The numbers the report shows about the latent space, as plain floats and lists."""
    means = posterior_means(guide, x, samples, inputs)
    act = activity(means)
    per_dim = kl_per_dim(model, guide, x, inputs)
    try:
        kl_mean = kl_per_point(model, guide, x, samples, inputs).mean().item()
    except UsageError:  # q(z | x) without a density (the auxiliary guide's mixture): not known
        kl_mean = None
    latent, observed = site_names(model, guide, x, inputs)
    return {
        "latent_site": latent,
        "observed_site": observed,
        "latent_dim": int(means.shape[1]),
        "active_units": int((act > ACTIVE_THRESHOLD).sum()),
        "activity": act.tolist(),
        "kl_mean": kl_mean,
        "kl_per_dim": None if per_dim is None else per_dim.tolist(),
    }
