"""Attend-Infer-Repeat (models/air.py) and its scenes (ppl_vae/scenes.py): the scenes hold what they say, the
spatial transformer puts a window where AIR.boxes says, the programs have AIR's sites with absent objects
masked out, their log p(x, z) − log q(z | x) is the one computed by hand, and training raises the ELBO."""

import math
from types import SimpleNamespace

import pyro
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer import SVI, TraceGraph_ELBO
from pyro.optim import Adam

from ppl_vae import data as datasets
from ppl_vae.errors import UsageError
from ppl_vae.models.air import AIR, crop, place, step_sites
from ppl_vae.models.mlp import MIN_SCALE
from ppl_vae.scenes import multi_digit_scenes

CANVAS, WINDOW = 24, 8


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", binarize="none").x_train.reshape(-1, 8, 8)


def log_weights(air, x, given=None):
    """(model trace, guide trace, log p(x, z) − log q(z | x) per scene [B]) for one draw z ~ q, with the sites
    in ``given`` set to its values in both programs."""
    guide, model = (poutine.condition(program, data=given or {}) for program in (air.guide, air.model))
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    model_trace.compute_log_prob(), guide_trace.compute_log_prob()
    return model_trace, guide_trace, sum(model_trace.nodes[n]["log_prob"] for n in (*step_sites(air.max_steps), "x")) \
        - sum(guide_trace.nodes[n]["log_prob"] for n in step_sites(air.max_steps))


# --- the scenes -------------------------------------------------------------------------------------------


def test_scenes_have_counts_in_range_and_are_deterministic_for_a_seed(digits):
    scenes = multi_digit_scenes(digits, 300, canvas=CANVAS, max_objects=3, seed=4)
    assert scenes["x"].shape == (300, CANVAS * CANVAS) and scenes["boxes"].shape == (300, 3, 4)
    assert scenes["counts"].dtype == torch.long
    assert set(scenes["counts"].tolist()) == {0, 1, 2, 3}  # every count in 0..max_objects, and only those
    assert 0 <= scenes["x"].min() and scenes["x"].max() <= 1
    # a box row per pasted digit, NaN rows after them
    present = ~scenes["boxes"].isnan().any(-1)
    assert torch.equal(present, torch.arange(3) < scenes["counts"][:, None])
    again, other = multi_digit_scenes(digits, 300, CANVAS, 3, seed=4), multi_digit_scenes(digits, 300, CANVAS, 3, 5)
    for key in scenes:
        assert torch.equal(again[key].nan_to_num(-1), scenes[key].nan_to_num(-1))
    assert not torch.equal(other["x"], scenes["x"])


def test_a_box_holds_its_digit_and_nothing_lies_outside_the_boxes(digits):
    scenes = multi_digit_scenes(digits, 200, canvas=CANVAS, seed=1)
    x = scenes["x"].reshape(-1, CANVAS, CANVAS)
    inside = torch.zeros_like(x, dtype=torch.bool)
    ones = 0
    for i, (count, boxes) in enumerate(zip(scenes["counts"], scenes["boxes"])):
        for x0, y0, w, h in boxes[:count].long().tolist():
            assert 0 <= x0 and x0 + w <= CANVAS and 0 <= y0 and y0 + h <= CANVAS
            assert (w, h) == (8, 8)
            inside[i, y0:y0 + h, x0:x0 + w] = True
        if count == 1:  # the box's pixels are one of the digits, exactly
            x0, y0, w, h = boxes[0].long().tolist()
            region = x[i, y0:y0 + h, x0:x0 + w]
            assert (digits - region).abs().flatten(1).max(1).values.min() == 0
            ones += 1
    assert ones > 30
    assert x[~inside].abs().max() == 0 and x[inside].sum() > 0


# --- the spatial transformer and the boxes ----------------------------------------------------------------


def over(column: int, row: int, canvas=CANVAS, window=WINDOW) -> torch.Tensor:
    """The z_where = (s, x, y) that puts a window × window object on the pixels [column, column + window) ×
    [row, row + window), from affine_grid's convention: canvas point u ∈ [−1, 1] reads the window at s·u + x,
    so its centre (2·column + window) / canvas − 1 must read the window's centre, 0."""
    s = canvas / window
    centre_x, centre_y = ((2 * c + window) / canvas - 1 for c in (column, row))
    return torch.tensor([s, -s * centre_x, -s * centre_y], dtype=torch.float64)


@pytest.mark.parametrize("column, row", [(0, 0), (16, 16), (3, 11), (9, 0)])
def test_a_window_placed_over_a_region_has_that_box_and_those_pixels(digits, column, row):
    air = AIR(canvas=CANVAS, window=WINDOW).double()
    z_where = over(column, row)
    assert torch.allclose(air.boxes(z_where[None, None]), torch.tensor([[[column, row, WINDOW, WINDOW]]],
                                                                      dtype=torch.float64), atol=1e-12, rtol=0)
    digit = digits[7].double()
    pasted = torch.zeros(CANVAS, CANVAS, dtype=torch.float64)
    pasted[row:row + WINDOW, column:column + WINDOW] = digit
    assert torch.allclose(place(digit[None], z_where[None], CANVAS)[0], pasted, atol=1e-12, rtol=0)
    # and the inverse transformer reads the digit back
    assert torch.allclose(crop(pasted.reshape(1, -1), z_where[None], CANVAS, WINDOW)[0], digit, atol=1e-12, rtol=0)


def test_an_object_of_ones_lies_within_its_box():
    """A decoder that draws all ones, placed at random z_where (sizes up to 1.2 times the window's, either
    sign of s): its nonzero pixels lie within the box (one pixel either side, bilinear interpolation's
    spread), and the pixels inside the box, one pixel in from its edges, are all ones."""
    air = AIR(canvas=CANVAS, window=WINDOW, z_what_dim=3, hidden=8).double()
    with torch.no_grad():
        last = air.nets["decoder"][-1]
        last.weight.zero_(), last.bias.fill_(60.0)  # σ(60) = 1 − 9e-27
    g = torch.Generator().manual_seed(0)
    n = 200
    uniform = torch.rand(3, n, generator=g, dtype=torch.float64)
    sign = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    z_where = torch.stack([(2.5 + 1.5 * uniform[0]) * sign, 3 * uniform[1] - 1.5, 3 * uniform[2] - 1.5], -1)
    ones, what = torch.ones(n, 1, dtype=torch.float64), torch.zeros(n, 1, 3, dtype=torch.float64)
    image = air.render(ones, z_where[:, None], what).reshape(n, CANVAS, CANVAS)
    x0, y0, w, h = air.boxes(z_where).unbind(-1)
    centre = torch.arange(CANVAS, dtype=torch.float64) + 0.5  # pixel i spans [i, i + 1)

    def within(lo, size, margin):  # the pixels whose centres lie in [lo − margin, lo + size + margin]
        return (centre > lo[:, None] - margin) & (centre < (lo + size)[:, None] + margin)

    near = within(y0, h, 1)[:, :, None] & within(x0, w, 1)[:, None, :]
    assert image[~near].abs().max() < 1e-9
    interior = within(y0, h, -1)[:, :, None] & within(x0, w, -1)[:, None, :]
    assert interior.sum() > 20 * n
    assert (image[interior] - 1).abs().max() < 1e-9


# --- the programs -----------------------------------------------------------------------------------------


def test_the_programs_have_airs_sites_inside_the_data_plate(digits):
    scenes = multi_digit_scenes(digits, 5, canvas=CANVAS, seed=0)
    air = AIR(canvas=CANVAS, z_what_dim=4, hidden=16)
    model_trace, guide_trace, _ = log_weights(air, scenes["x"])
    shapes = {"pres": (5,), "where": (5, 3), "what": (5, 4)}
    assert step_sites(2) == AIR.latent_sites == ("z_pres_0", "z_where_0", "z_what_0",
                                                 "z_pres_1", "z_where_1", "z_what_1")
    for trace in (model_trace, guide_trace):
        latent = [n for n, s in trace.nodes.items() if s["type"] == "sample" and not s["is_observed"] and n != "data"]
        assert latent == list(AIR.latent_sites)
        for name in latent:
            assert tuple(trace.nodes[name]["value"].shape) == shapes[name.split("_")[1]]
            assert [f.name for f in trace.nodes[name]["cond_indep_stack"]] == ["data"]
    assert model_trace.nodes["x"]["is_observed"] and model_trace.nodes["x"]["fn"].batch_shape == (5,)
    assert [f.name for f in model_trace.nodes["x"]["cond_indep_stack"]] == ["data"]
    z_pres = torch.stack([guide_trace.nodes[f"z_pres_{t}"]["value"] for t in range(2)], 1)
    assert ((z_pres == 0) | (z_pres == 1)).all() and (z_pres[:, 1] <= z_pres[:, 0]).all()
    # the baseline is declared on z_pres, and its parameters are registered apart from the programs' networks
    baseline = guide_trace.nodes["z_pres_0"]["infer"]["baseline"]["baseline_value"]
    assert baseline.shape == (5,) and baseline.requires_grad
    names = set(pyro.get_param_store().keys())
    assert {n for n in names if n.startswith("air_baseline$$$")} == {f"air_baseline$$${n}" for n, _ in
                                                                   air.baseline.named_parameters()}
    assert {n for n in names if n.startswith("air$$$")} == {f"air$$${n}" for n, _ in air.nets.named_parameters()}


def test_an_absent_object_contributes_nothing(digits):
    scenes = multi_digit_scenes(digits, 4, canvas=CANVAS, seed=0)
    air = AIR(canvas=CANVAS, z_what_dim=4, hidden=16).double()
    present = {"z_pres_0": torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64),
               "z_pres_1": torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)}
    model_trace, guide_trace, _ = log_weights(air, scenes["x"].double(), present)
    for t in range(2):
        absent = present[f"z_pres_{t}"] == 0
        for trace in (model_trace, guide_trace):
            for kind in ("where", "what"):
                log_prob = trace.nodes[f"z_{kind}_{t}"]["log_prob"]
                assert (log_prob[absent] == 0).all() and (log_prob[~absent] != 0).all()
    # z_pres_1 = 0 is certain after z_pres_0 = 0, in the model and in the guide
    for trace in (model_trace, guide_trace):
        assert (trace.nodes["z_pres_1"]["log_prob"][2:] == 0).all()
    # the model's mean image draws the present objects only: nothing at all in the last two scenes
    mean = model_trace.nodes["x"]["fn"].base_dist.loc
    assert (mean[2:] == 0).all() and (mean[:2].abs().sum(-1) > 0).all()
    one = air.render(present["z_pres_0"][:2, None], model_trace.nodes["z_where_0"]["value"][:2, None],
                     model_trace.nodes["z_what_0"]["value"][:2, None])
    assert torch.allclose(mean[1], one[1], atol=1e-12, rtol=0) and not torch.allclose(mean[0], one[0])


def normal_log_density(value, loc, scale):
    return (-0.5 * ((value - loc) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)


def bernoulli_log_mass(value, p):
    return torch.where(value == 1, torch.log(p), torch.log1p(-p))


def by_hand(air, x, z):
    """log p(x, z) − log q(z | x) per scene, from the module's networks and the papers' formulas."""
    n = x.shape[0]
    hidden = air.nets["rnn"].hidden_size
    h, c = x.new_zeros(n, hidden), x.new_zeros(n, hidden)
    pres, where, what = x.new_ones(n), x.new_zeros(n, 3), x.new_zeros(n, air.z_what_dim)
    prior_loc = torch.tensor([CANVAS / WINDOW, 0.0, 0.0], dtype=x.dtype)
    prior_scale = torch.tensor([0.2, 1.0, 1.0], dtype=x.dtype)
    log_p = log_q = 0.0
    mean = torch.zeros_like(x)
    for t in range(air.max_steps):
        z_pres, z_where, z_what = z[f"z_pres_{t}"], z[f"z_where_{t}"], z[f"z_what_{t}"]
        # the guide
        h, c = air.nets["rnn"](torch.cat([x, where, what, pres[:, None]], -1), (h, c))
        out = air.nets["head"](h)
        log_q = log_q + bernoulli_log_mass(z_pres, pres * torch.sigmoid(out[:, 0]))
        loc, scale = prior_loc + out[:, 1:4], prior_scale * (F.softplus(out[:, 4:7]) + MIN_SCALE)
        log_q = log_q + z_pres * normal_log_density(z_where, loc, scale)
        loc, scale = air.nets["encoder"](crop(x, z_where, CANVAS, WINDOW).reshape(n, -1))
        log_q = log_q + z_pres * normal_log_density(z_what, loc, scale)
        # the model
        log_p = log_p + bernoulli_log_mass(z_pres, 0.5 * pres)
        log_p = log_p + z_pres * (normal_log_density(z_where, prior_loc, prior_scale)
                                  + normal_log_density(z_what, torch.zeros_like(z_what), torch.ones_like(z_what)))
        objects = torch.sigmoid(air.nets["decoder"](z_what)).reshape(n, WINDOW, WINDOW)
        mean = mean + z_pres[:, None] * place(objects, z_where, CANVAS).reshape(n, -1)
        pres, where, what = z_pres, z_where, z_what
    log_p = log_p + normal_log_density(x, mean, torch.tensor(0.3, dtype=x.dtype))
    return log_p - log_q


def test_the_elbo_of_a_draw_is_the_one_computed_by_hand(digits):
    x = multi_digit_scenes(digits, 16, canvas=CANVAS, seed=2)["x"].double()
    air = AIR(canvas=CANVAS, z_what_dim=5, hidden=32).double()
    pyro.set_rng_seed(3)
    _, guide_trace, log_w = log_weights(air, x)
    z = {n: guide_trace.nodes[n]["value"] for n in AIR.latent_sites}
    counts = z["z_pres_0"] + z["z_pres_1"]
    assert {0, 1, 2} <= set(counts.tolist())  # the draw has scenes of each count, so masks are exercised
    with torch.no_grad():
        expected = by_hand(air, x, z)
        assert torch.allclose(log_w, expected, atol=1e-9, rtol=0)
        # and TraceGraph_ELBO's loss on the same draw is −Σ of them
        pyro.set_rng_seed(3)
        loss = TraceGraph_ELBO().loss(air.model, air.guide, x)
    assert loss == pytest.approx(-expected.sum().item(), abs=1e-9)


# --- evaluation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("probability, inferred", [(0.6, 2), (0.4, 0), (0.999, 2), (0.001, 0)])
def test_counts_take_z_pres_where_its_probability_exceeds_a_half(digits, probability, inferred):
    scenes = multi_digit_scenes(digits, 60, canvas=CANVAS, seed=0)
    air = AIR(canvas=CANVAS, z_what_dim=3, hidden=8)
    with torch.no_grad():
        air.nets["head"].weight[0].zero_(), air.nets["head"].bias[0].fill_(math.log(probability / (1 - probability)))
    scene = air.infer_scene(scenes["x"])
    assert [tuple(scene[k].shape) for k in ("z_pres", "z_where", "z_what")] == [(60, 2), (60, 2, 3), (60, 2, 3)]
    assert (scene["z_pres"].sum(-1) == inferred).all()
    accuracy = (scenes["counts"] == inferred).double().mean().item()
    assert 0 < accuracy < 1 and air.count_accuracy(scenes["x"], scenes["counts"]) == accuracy
    if probability in (0.6, 0.4):  # a draw from q is not the mode: some scenes have another count
        pyro.set_rng_seed(0)
        assert (air.infer_scene(scenes["x"], mode=False)["z_pres"].sum(-1) != inferred).any()


def test_from_config_reads_the_networks_and_the_canvas():
    config = SimpleNamespace(pair=SimpleNamespace(hidden=[], latent_dim=6, z_pres_prior=0.1, z_pres_baseline="average",
                                                  steps=None))
    air = AIR.from_config(config, SimpleNamespace(image_shape=(1, 16, 16), name="scenes"))
    assert (air.canvas, air.z_what_dim, air.nets["rnn"].hidden_size, air.max_steps) == (16, 6, 256, 2)
    config.pair.steps = 3  # up to three objects: the sites of three steps
    three = AIR.from_config(config, SimpleNamespace(image_shape=(1, 16, 16), name="scenes"))
    assert three.max_steps == 3 and three.latent_sites[-1] == "z_what_2"
    assert (air.z_pres_prior, air.baseline_kind) == (0.1, "average")
    config.pair.hidden = [32, 64]
    assert AIR.from_config(config, SimpleNamespace(image_shape=(1, 8, 8), name="digits")).nets["rnn"].hidden_size == 32
    with pytest.raises(UsageError, match="square"):
        AIR.from_config(config, SimpleNamespace(image_shape=(1, 8, 10), name="wide"))


# --- training ---------------------------------------------------------------------------------------------


def test_training_raises_the_elbo(digits):
    """100 steps of SVI with TraceGraph_ELBO (the declared baseline on z_pres) on 512 scenes raise the ELBO of
    256 held-out scenes by more than five standard errors of the (paired, one-draw) estimate of the change."""
    train = multi_digit_scenes(digits, 512, canvas=CANVAS, seed=0)["x"]
    test = multi_digit_scenes(digits, 256, canvas=CANVAS, seed=1)["x"]
    air = AIR(canvas=CANVAS, hidden=64)
    with torch.no_grad():
        before = log_weights(air, test)[2]
    svi = SVI(air.model, air.guide, Adam({"lr": 1e-3}), TraceGraph_ELBO())
    order = torch.Generator().manual_seed(0)
    for _ in range(100):
        svi.step(train[torch.randperm(512, generator=order)[:64]])
    with torch.no_grad():
        after = log_weights(air, test)[2]
    change = after - before
    assert change.mean() > 5 * change.std() / math.sqrt(len(change))



@pytest.mark.slow
def test_air_trains_from_the_command_line_on_multi_digit_scenes_and_reports_counts_and_boxes(tmp_path, capsys):
    from helpers import run_cli

    out = tmp_path / "air"
    code, printed, err = run_cli(["train", "--model", "air", "--dataset", "multi-digits", "--hidden", "32",
                                  "--latent-dim", "4", "--steps", "3", "--epochs", "1", "--no-progress", "--out", out],
                                 capsys)
    assert code == 0 and "test bound" in printed, err
    from ppl_vae.run import load

    assert load(str(out), "cpu").model.max_steps == 3  # up to three objects, as the paper's AIR
    assert run_cli(["report", out], capsys)[0] == 0
    report = (out / "report.md").read_text()
    line = next(row for row in report.splitlines() if row.startswith("| count accuracy"))
    accuracy = float(line.split("|")[2].split("±")[0])
    assert 0.0 <= accuracy <= 1.0 and "500 test scenes" in line
    assert (out / "figures" / "boxes.png").stat().st_size > 5_000


@pytest.mark.slow
def test_compare_sets_the_learned_baseline_beside_vimco_on_air(tmp_path, capsys):
    import csv

    from helpers import run_cli

    out = tmp_path / "cmp"
    code, printed, err = run_cli(["compare", "--model", "air", "--dataset", "multi-digits", "--hidden", "32",
                                  "--latent-dim", "4", "--objectives", "elbo,vimco", "--particles", "2", "--epochs", "1",
                                  "--eval-particles", "5", "--snr-samples", "3", "--no-progress", "--out", out], capsys)
    assert code == 0, err
    with open(out / "comparison.csv") as f:
        rows = {r["objective"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["elbo", "vimco"] and all(float(r["guide_grad_variance"]) > 0 for r in rows.values())


@pytest.mark.parametrize("argv, sentence", [
    (["--model", "air", "--dataset", "multi-digits", "--objective", "iwae"],
     "the air model trains with --objective elbo or score or score-avg or score-nn or vimco only"),
    (["--model", "air", "--dataset", "multi-digits", "--z-pres-prior", "1.5"], "--z-pres-prior is a probability"),
    (["--model", "air", "--dataset", "multi-digits", "--guide", "gaussian"], "--guide gaussian samples z but --model air"),
    (["--model", "air", "--dataset", "multi-digits", "--binarize", "dynamic"], "is a density for continuous data"),
])
def test_bad_input_for_air_is_one_sentence_before_any_work(argv, sentence, tmp_path, capsys):
    from helpers import run_cli

    code, _, err = run_cli(["train", *argv, "--epochs", "1", "--no-progress", "--out", tmp_path / "run"], capsys)
    assert code == 2 and sentence in err and "Traceback" not in err, err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
