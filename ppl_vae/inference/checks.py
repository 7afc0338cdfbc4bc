"""What an objective can do with a Pyro program, checked on one batch before any training.

Every bound this project reports is per data point, a function of log w_n for each point n of
``pyro.plate("data")`` (:mod:`ppl_vae.inference.weights`). A program that does not have that
shape, or that an objective would silently mistreat, is refused with one sentence:

- a latent site outside the data plate (a global latent β) under the importance-weighted
  objectives, whose weights are per data point; the Pyro ELBOs (elbo, elbo-analytic, score*,
  enum) train the full-data ELBO per point, L/N = (1/N)[Σ_n E_q log p(x_n, z_n | β) − log q(z_n | x_n)
  + E_q log p(β) − log q(β)], once the data plate is ``pyro.plate("data", N, subsample=idx)``
  (N is the training set's size), and their test bound is the ELBO given β ~ q(β);
- no site inside a plate named ``"data"`` at all (a plate with another name);
- a guide site marked for enumeration (``config_enumerate(guide)``), under every objective but ``elbo``
  and ``enum`` (``TraceEnum_ELBO``, which sums over its values weighted by q): the others would sample it;
- a discrete site marked for enumeration (``config_enumerate``) and not sampled by the guide,
  under the score-function objectives (``TraceGraph_ELBO``) or ``elbo-analytic``
  (``TraceMeanField_ELBO``): those would sample it from the prior instead of summing it out.
  ``elbo`` sums it out (:func:`summing_out` gives it ``TraceEnum_ELBO``), as ``enum`` and the
  importance-weighted objectives do, so its training and test bounds are one quantity;
- under ``rws`` and ``dreg``, which estimate the model's and the guide's gradients differently, a
  parameter that both use: θ and φ are told apart by what log p(x, z) at fixed z and q(z | x) depend on
  (:class:`~ppl_vae.inference.objectives.weighted.Roles`), not by where a module was registered;
- under ``elbo-analytic`` (``TraceMeanField_ELBO``), a guide site whose KL to the model's site has
  no closed form: Pyro would estimate that term by Monte Carlo without a word, and a comparison
  table would show the same estimator under two names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, TraceGraph_ELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

from ppl_vae.data import Dataset, batch_inputs, given_rows
from ppl_vae.device import forked_rng
from ppl_vae.errors import Refusal, UsageError, user_code
from ppl_vae.inference import objectives
from ppl_vae.inference.objectives.base import is_discrete
from ppl_vae.inference.objectives.weighted import WeightedLoss, samples_enumerated
from ppl_vae.inference.weights import (data_plate, data_scale, data_size, in_plate, one_at_a_time, own_scales, plate_nesting,
                                       vectorizable)
from ppl_vae.pair import Pair, callables, named_inputs, owning_module, pair_of


def sample_sites(trace, observed: bool):
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site) and site["is_observed"] == observed}


def refusal(objective, model_trace, guide_trace, enumerated_elsewhere: bool = False,
            full_batch: bool = False) -> UsageError | None:
    """Why ``objective`` cannot train this model and guide (traced once on a batch), or None.
    ``enumerated_elsewhere``: the program enumerates on its other path (semi-supervised: unlabelled batches).
    ``full_batch``: every step sees the whole training set (sparse_gamma_def.py's protocol), so a data
    plate of the batch's size is the data set's."""
    latents = {**sample_sites(guide_trace, False), **sample_sites(model_trace, False)}
    observed = sample_sites(model_trace, True)
    plate = data_plate(model_trace)
    if not any(in_plate(s, plate) for s in (*latents.values(), *observed.values())):
        return UsageError("the model observes nothing inside a plate, so there are no data points to bound per "
                          "point; put the observed site(s) in the plate of the data points, "
                          "with pyro.plate('data', x.shape[0]) (any name).")
    outside = [name for name, site in latents.items() if not in_plate(site, plate)]
    loss = getattr(objective, "loss", objective)
    how = needs_of(objective).local_latents
    if outside and how:
        return Refusal(f"latent site {outside[0]!r} lies outside pyro.plate({plate!r}): a global latent variable, and "
                       f"the {objective.name} objective {how}, which needs every latent variable local",
                       lambda needs: needs.local_latents is None and not needs.enumeration,
                       because=" to train the full-data ELBO per point")
    if outside and data_scale(model_trace, plate) == 1 and not full_batch:
        return UsageError(f"latent site {outside[0]!r} lies outside pyro.plate({plate!r}): a global latent, whose "
                          f"log-density counts once for the whole data set, so the data plate must know the data "
                          f"set's size; write pyro.plate({plate!r}, N if idx is not None else x.shape[0], "
                          f"subsample=idx) with the idx that fit passes (None on test points).")
    enumerated = enumerated_sites(model_trace, guide_trace)
    in_guide = guide_enumerated_sites(guide_trace, objective)
    if isinstance(loss, TraceEnum_ELBO) and not enumerated and not in_guide and not enumerated_elsewhere:
        return Refusal(f"the {objective.name} objective sums discrete sites out exactly (the guide's discrete latents, "
                       f"the model's sites marked for enumeration by config_enumerate), and this pair has none, so it "
                       f"would train a plain ELBO under another name", plain_elbo)
    if in_guide and not isinstance(loss, TraceEnum_ELBO):
        return samples_enumerated(in_guide[0], objective.name)
    if enumerated and isinstance(loss, (Trace_ELBO, TraceGraph_ELBO)) and not isinstance(loss, TraceEnum_ELBO):
        return Refusal(f"model site {enumerated[0]!r} is marked for enumeration, which the {objective.name} objective "
                       f"does not do: it would sample the site from the prior instead of summing it out",
                       lambda needs: needs.sums_out and not needs.enumeration, because=" to sum it out")
    if isinstance(loss, TraceMeanField_ELBO):
        for name, site in sample_sites(guide_trace, False).items():
            if name in model_trace.nodes and not has_closed_form_kl(site["fn"], model_trace.nodes[name]["fn"]):
                return Refusal(f"site {name!r} has no closed-form KL(q ‖ p) between {type(site['fn']).__name__} and "
                               f"{type(model_trace.nodes[name]['fn']).__name__}, so {objective.name} would estimate "
                               f"it by Monte Carlo like elbo does", plain_elbo)
    return None


def needs_of(objective) -> objectives.Needs:
    """What an objective (or a bare loss) declares it needs (:class:`~ppl_vae.inference.objectives.base.Needs`)."""
    return getattr(objective, "needs", None) or getattr(getattr(objective, "loss", None), "needs", None) \
        or objectives.Needs()


def plain_elbo(needs) -> bool:
    """The advice for a pair that asked for more than it has: Pyro's ELBO, which sums out what is marked."""
    return needs.enumerates_guide and not needs.enumeration


def enumerated_sites(model_trace, guide_trace) -> list[str]:
    """The model's sites marked for parallel enumeration that the guide does not sample."""
    return [name for name, site in model_trace.nodes.items()
            if site["type"] == "sample" and site["infer"].get("enumerate") == "parallel"
            and name not in guide_trace.nodes]


def guide_enumerated_sites(guide_trace, objective=None) -> list[str]:
    """The guide's sites marked for parallel enumeration (``config_enumerate(guide)``, as ss_vae_M2.py does);
    for an ``objective`` that sums every discrete latent of the guide (``needs.sums_guide``), those."""
    every = objective is not None and needs_of(objective).sums_guide
    return [name for name, site in sample_sites(guide_trace, False).items()
            if site["infer"].get("enumerate") == "parallel" or every and is_discrete(site["fn"])]


def summing_out(objective, model_trace, guide_trace):
    """``objective`` with ``TraceEnum_ELBO`` in place of the ``elbo`` objective's ``Trace_ELBO`` when the
    model or the guide marks sites for enumeration: the same ELBO with the model's sites summed out, not
    sampled from the prior, and the guide's summed over their values weighted by q, not sampled from q
    (the estimator of ``enum``; on a pair with nothing to enumerate it would only be slower).

    Likewise ``TraceGraph_ELBO`` when the guide declares score-function baselines of its own
    (``infer={"baseline": ...}``, AIR's ``nn_baseline`` for z_pres): the same ELBO and its gradient,
    reparameterized where a site allows it and by the score function with the program's baselines
    and Rao-Blackwellized costs where it does not, as Pyro trains such a program."""
    loss = getattr(objective, "loss", None)
    if type(loss) is not Trace_ELBO:
        return objective
    if enumerated_sites(model_trace, guide_trace) or guide_enumerated_sites(guide_trace):
        kind = TraceEnum_ELBO
    elif declared_baselines(guide_trace):
        kind = TraceGraph_ELBO
    else:
        return objective
    like = kind(num_particles=loss.num_particles, vectorize_particles=loss.vectorize_particles,
                max_plate_nesting=loss.max_plate_nesting)
    # the score-function ELBO's running-average baselines update outside torch's ops: not recordable
    return dataclasses.replace(objective, loss=like, recordable=kind is TraceEnum_ELBO)


def declared_baselines(guide_trace) -> list[str]:
    """The guide's latent sites that declare a score-function baseline (``infer={"baseline": ...}``)."""
    return [name for name, site in sample_sites(guide_trace, False).items() if site["infer"].get("baseline")]


def nested(objective, nesting: int):
    """``objective`` with its loss told that the program nests ``nesting`` plates
    (:func:`~ppl_vae.inference.weights.plate_nesting`; lda.py's words inside documents: 2), so that particles
    and enumerated values go left of them all. Pyro's ELBOs and the weighted losses read
    ``max_plate_nesting`` when they run."""
    if nesting <= objective.nesting:
        return objective

    loss = objective.loss
    if hasattr(loss, "max_plate_nesting"):
        # Pyro's own vectorized particle plate counts as one more plate (pyro.infer.ELBO.__init__)
        vectorized = getattr(loss, "vectorize_particles", False) and loss.num_particles > 1
        loss.max_plate_nesting = nesting + vectorized
    return dataclasses.replace(objective, loss=loss, nesting=nesting)


def sequential(objective):
    """``objective`` drawing its K particles in K passes with no particle dimension (Pyro's default), for a
    program that does not broadcast over one (cvae.py indexes its batch with a boolean mask): the weighted
    losses and the test bound loop, Pyro's ELBOs stop vectorizing (a recorded step holds the K passes unrolled)."""
    loss = objective.loss
    if isinstance(loss, WeightedLoss):
        loss.at_once = False
    elif getattr(loss, "vectorize_particles", False):
        loss.max_plate_nesting -= loss.num_particles > 1  # Pyro counted its particle plate (ELBO.__init__)
        loss.vectorize_particles = False
    return dataclasses.replace(objective, loss=loss, vectorized=False)


def first_batch(data, inputs: dict, n: int = 2, given: bool | None = None):
    """(x, idx, named inputs) of the first ``n`` training points, binarized as training sees them; with
    ``given`` (semi-supervised data, :func:`~ppl_vae.data.given_rows`), of the first ``n`` that have
    (True) or lack (False) the partial inputs."""
    x = data.train_epoch(0)
    rows = torch.arange(x.shape[0], device=x.device)
    if given is None and given_rows(inputs) is not None:  # labelled points, where there are some
        given = bool(given_rows(inputs).any())
    if given is not None:
        rows = rows[given_rows(inputs).to(x.device) == given]
    rows = rows[:n]
    return x[rows], rows, batch_inputs(inputs, rows)


def first_traces(model, guide, data, inputs: dict, n: int = 2, batch=None):
    """(model trace, guide trace) of the pair (callables as :func:`ppl_vae.pair.callables` makes them) on
    the first ``n`` training points (or ``batch``, a :func:`first_batch`), without gradients and with
    torch's random stream put back; Pyro parameters that did not exist are created, with their constraints."""
    x, idx, named = batch or first_batch(data, inputs, n)
    with torch.no_grad(), forked_rng(x):
        guide_tr = poutine.trace(guide).get_trace(x, idx, **named)
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x, idx, **named)
    return model_tr, guide_tr


@dataclass
class Prepared:
    """What :func:`prepared` found: the objective as it trains the pair, the model's trace on two
    training points, the global latent sites (outside the data plate), and the scales the program
    sets itself (:func:`~ppl_vae.inference.weights.own_scales`)."""

    objective: object
    model_trace: object
    global_sites: list
    own_scales: dict  # sites the program scales itself (poutine.scale), beyond subsampling
    one_at_a_time: str | None = None  # why particles are drawn one pass each, if they are
    enumerates: bool = False  # whether the program marks sites for enumeration (on this batch's path)


def global_sites(model_trace, guide_trace) -> list[str]:
    latents = {**sample_sites(guide_trace, False), **sample_sites(model_trace, False)}
    plate = data_plate(model_trace)
    return [name for name, site in latents.items() if not in_plate(site, plate)]


def prepared(objective, model, guide, data, inputs: dict, test_inputs: dict | None = None,
             full_batch: bool = False, step_inputs: dict | None = None) -> Prepared:
    """The objective as it trains this pair (:func:`summing_out`), or a :class:`UsageError` saying why
    it cannot (:func:`refusal`) — before any work, on the first two training points. A pair that
    fails there (a shape error, a plate that collides with the particles' dim=-2, ...) is refused
    with what failed, not left to fail mid-training: the (eager) training loss and the test bound are
    each evaluated once, in a param-store scope of their own and with the random stream put back.
    A refusal's advice names only the objectives that these same checks accept for the pair.
    ``step_inputs``: the pair's per-step arguments at the first step, with which training calls it."""
    try:
        return checked(objective, model, guide, data, inputs, test_inputs, full_batch, step_inputs)
    except Refusal as refused:
        def accepts(name: str) -> bool:
            try:
                with pyro.get_param_store().scope():
                    checked(objectives.make(name, particles=objective.particles), model, guide, data, inputs,
                            test_inputs, full_batch, step_inputs)
                return True
            except UsageError:
                return False

        raise UsageError(refused.sentence([name for name in refused.alternatives
                                           if name != objective.name and accepts(name)])) from None


def checked(objective, model, guide, data, inputs: dict, test_inputs: dict | None,
            full_batch: bool = False, step_inputs: dict | None = None) -> Prepared:
    """:func:`prepared` without the review of a refusal's advice. On semi-supervised data both of the
    program's paths are checked, unlabelled batches first: what they need (the enumeration of the
    label in the guide) is what the objective does on every batch."""
    def batch(given=None):
        x, idx, named = first_batch(data, inputs, data.x_train.shape[0] if full_batch else 2, given)
        return x, idx, {**named, **(step_inputs or {})}

    given = given_rows(inputs)
    if given is None:
        return checked_on(batch(), objective, model, guide, data, inputs, test_inputs, full_batch=full_batch)
    labelled = bool(given.any())
    unlabelled = checked_on(batch(False), objective, model, guide, data, inputs, None if labelled else test_inputs,
                            " without a label")
    if not labelled:
        return unlabelled
    found = checked_on(batch(True), unlabelled.objective, model, guide, data, inputs, test_inputs,
                       enumerated_elsewhere=unlabelled.enumerates)
    found.one_at_a_time = found.one_at_a_time or unlabelled.one_at_a_time
    found.own_scales = {**unlabelled.own_scales, **found.own_scales}
    return found


def some_points(n: int, split: str) -> str:
    return f"{'two' if n == 2 else n} {split} points"


def checked_on(batch, objective, model, guide, data, inputs: dict, test_inputs: dict | None,
               which: str = "", enumerated_elsewhere: bool = False, full_batch: bool = False) -> Prepared:
    """:func:`checked` on one batch of training points (two; all of them for a full-batch run)."""
    points = some_points(batch[0].shape[0], "training")
    with user_code(f"the model and guide fail on {points}{which}"):
        model_tr, guide_tr = first_traces(model, guide, data, inputs, batch=batch)
    objective = nested(summing_out(objective, model_tr, guide_tr), plate_nesting(model_tr, guide_tr))
    refused = refusal(objective, model_tr, guide_tr, enumerated_elsewhere, full_batch)
    if refused is not None:
        raise refused
    n, said = data.x_train.shape[0], data_size(model_tr)
    if said is not None and said != n:
        plate = data_plate(model_tr)
        raise UsageError(f"pyro.plate({plate!r}) says the data set has {said} points and the training set has {n}, "
                         f"so every bound would be scaled by {said}/{n}; write pyro.plate({plate!r}, {n}, "
                         f"subsample=idx).")
    globals_ = global_sites(model_tr, guide_tr)
    x, idx, named = batch
    nesting = objective.nesting
    has_test = test_inputs is not None and data.x_test is not None
    with pyro.get_param_store().scope(), forked_rng(x), torch.no_grad():
        if has_test:  # as the trainer calls it: test points, no idx
            rows = slice(0, None if full_batch else 2)
            xt, nt = data.x_test[rows], batch_inputs(test_inputs, rows)
            with user_code(f"the model and guide run on {points} with their idx but fail on "
                           f"{some_points(xt.shape[0], 'test')}, where they get idx=None"):
                first_traces(model, guide, data, test_inputs, batch=(xt, None, nt))
        # every test bound, the weighted losses and Pyro's vectorized ELBOs draw K particles at once, if it can
        why = vectorizable(model, guide, x, idx, max_plate_nesting=nesting, **named) or (
            has_test and vectorizable(model, guide, xt, max_plate_nesting=nesting, **nt))
        if why:
            objective = sequential(objective)
        loss = getattr(objective, "loss", None)
        if loss is not None:
            with user_code(f"the {objective.name} objective fails on {points}{which}"):
                loss.loss(model, guide, x, idx, **named)
            if isinstance(loss, WeightedLoss) and loss.needs.splits_roles:  # θ and φ by what the computation uses
                with torch.enable_grad():
                    loss.check_roles(loss.draw(model, guide, x, idx, **named))
        if has_test:
            with user_code(f"the {objective.name} objective's test bound fails on {some_points(xt.shape[0], 'test')}"):
                objective.test_bound(model, guide, xt, given_globals=bool(globals_), **nt)
    enumerates = bool(enumerated_sites(model_tr, guide_tr) or guide_enumerated_sites(guide_tr, objective))
    return Prepared(objective, model_tr, globals_, own_scales(model_tr, guide_tr), why and one_at_a_time(why),
                    enumerates)


def has_closed_form_kl(q, p) -> bool:
    try:
        kl_divergence(q, p)
    except NotImplementedError:
        return False
    return True


def describe(model, guide, data) -> list[str]:
    """What a pair is, in the terms the refusals use: its named inputs, the guide's and the model's
    sample sites (reparameterized or not, enumerated, inside or outside the data plate), the data
    plate (its dim, its subsampling) and the guide sites with no closed-form KL to the prior."""
    inputs = named_inputs(model, guide, data)
    with pyro.get_param_store().scope(), user_code("the model and guide fail on two training points"):
        model_tr, guide_tr = first_traces(*callables(model, guide), data, inputs)
    names = lambda sites: ", ".join(sites) or "none"  # noqa: E731
    latent = sample_sites(guide_tr, False)
    lines = [f"named inputs: {names(inputs)}",
             "guide samples: " + names(f"{n} ({kind(s['fn'])})" for n, s in latent.items()),
             f"model observes: {names(sample_sites(model_tr, True))}",
             f"enumerated in the model (summed out): {names(enumerated_sites(model_tr, guide_tr))}",
             f"enumerated in the guide (summed over q's values by elbo and enum; enum sums every discrete one): "
             f"{names(guide_enumerated_sites(guide_tr))}"]
    model_latent = sample_sites(model_tr, False)
    plate = data_plate(model_tr)
    lines.append(f"global (outside pyro.plate({plate!r})): "
                 f"{names(n for n, s in {**latent, **model_latent}.items() if not in_plate(s, plate))}")
    frames = {(f.dim, f.size, f.full_size) for s in model_tr.nodes.values() if s["type"] == "sample"
              for f in s["cond_indep_stack"] if f.name == plate}
    for dim, size, full in sorted(frames, key=str):
        subsampled = f", subsampled: {size} of {full} points per batch" if full not in (None, size) else ""
        lines.append(f"data plate: pyro.plate({plate!r}) at dim={dim}{subsampled}")
    if not frames:
        lines.append("data plate: none (the model observes nothing inside a plate)")
    no_kl = [n for n, s in latent.items() if n in model_tr.nodes and not has_closed_form_kl(s["fn"], model_tr.nodes[n]["fn"])]
    lines.append(f"no closed-form KL(q ‖ p): {names(no_kl)}")
    return lines


def kind(fn) -> str:
    """How a guide site's distribution can be trained through, in the words :func:`describe` uses."""
    if fn.has_rsample:
        return "reparameterized"
    return "score-function only, discrete" if is_discrete(fn) else "score-function only"


def check(model, guide, data=None, names=None, particles: int = 2, batch_size: int | None = None) -> dict[str, str]:
    """A one-batch dry run of each objective on a pair: {objective: "ok" or "refused: why"}.

    ``model``/``guide`` as :func:`ppl_vae.fit` takes them (or ``check(Pair(...), data)``); ``data`` a Dataset
    or a tensor [N, ...]; ``names`` the objectives (default: every one); ``batch_size``: the training's, where
    it takes the whole data set (a full-batch program). Nothing is trained: each objective goes through
    :func:`prepared` (its refusals, one evaluation of its loss and its test bound), without gradients,
    in a param-store scope of its own and with the random stream put back.
    """
    if isinstance(model, Pair):
        (model, guide), data, names = model.programs(), guide, data if names is None else names
    pair = pair_of(model)  # a Pair's program is checked as training calls it at its first step
    steps = {name: schedule(0) for name, schedule in pair.step_inputs.items()} if pair else {}
    data = data if isinstance(data, Dataset) else Dataset.from_tensors(data)
    full_batch = batch_size is not None and batch_size >= data.x_train.shape[0]
    inputs = named_inputs(model, guide, data)
    own_test_bound = getattr(owning_module(guide), "test_bound", None) is not None  # refits q per test point
    test_inputs = None if own_test_bound else named_inputs(model, guide, data, "test")
    model, guide = callables(model, guide)
    results = {}
    for name in names or objectives.OBJECTIVES:
        objective = objectives.make(name, particles=particles)
        try:
            with pyro.get_param_store().scope():  # the parameters it creates are nobody's
                prepared(objective, model, guide, data, inputs, test_inputs, full_batch, steps)
            why = None
        except UsageError as e:
            why = str(e).rstrip(".")
        results[name] = "ok" if why is None else f"refused: {why}"
    return results


def sharding_refusal(objective, guide_module, model_trace, training, n_train: int, size: int) -> str | None:
    """Why this run cannot train data-parallel on ``size`` processes, or None; ``model_trace``: the
    model's trace on a first batch."""
    plate = data_plate(model_trace)
    outside = [n for n, site in sample_sites(model_trace, True).items() if not in_plate(site, plate)]
    if outside and data_scale(model_trace, plate) == 1:
        return (f"observed site or factor {outside[0]!r} lies outside pyro.plate({plate!r}), so its term counts once "
                f"per mini-batch, and once per process when the batch is sharded; subsample the data plate "
                f"(pyro.plate({plate!r}, N, subsample=idx)), which weights it right, or train without torchrun")
    needs, name = needs_of(objective), getattr(objective, "name", "this objective")
    if needs.running_state:
        return (f"{name} keeps a {needs.running_state}, which each process would keep for its own shard only, "
                f"so the run would not equal one process's; train it without torchrun")
    if needs.batch_statistic:
        return (f"the {name} objective's {needs.batch_statistic}, a statistic of the batch that the shards' terms "
                f"do not add up to; train it without torchrun")
    if getattr(guide_module, "test_bound", None) is not None:
        return (f"the {type(guide_module).__name__} guide keeps a table of variational parameters per data point, "
                f"which every process would hold and only partly train; train it without torchrun")
    b = training.batch_size
    if b < size:
        return f"--batch-size {b} is smaller than the {size} processes, so some would get no data; raise --batch-size"
    last = n_train % b
    if not training.drop_last and n_train > b and 0 < last < size:
        return (f"the last mini-batch of each epoch has {last} points, fewer than the {size} processes; "
                f"keep drop_last (the default) or choose a --batch-size that leaves at least {size}")
    return None
