"""Datasets as whole tensors on the training device, binarization protocols and mini-batches.

Every split is one tensor [N, ...] that lives on the training device, with any named inputs
beside it (labels, covariates, masks, lengths: tensors [N, ...] that the model and guide receive
as keyword arguments); a mini-batch is a slice of a random permutation of row indices, so
training makes no host-to-device copies. The built-in data sets are float vectors [N, D]
(images flattened, grey levels in [0, 1], their shape kept in ``image_shape`` for figures);
data a user gives (:meth:`Dataset.from_tensors`, ``--data FILE``) reaches the program in the
shape and dtype it was given: images [N, C, H, W], sequences [N, T, D], word indices or counts
of an integer dtype (floats become float32, the parameters' dtype).

Binarization (``--binarize``):

- ``dynamic``: a fresh Bernoulli draw x ~ Bernoulli(grey) of the training set every epoch,
  on the device (the protocol of Burda et al. 2016).
- ``static``: one draw of the training set, seeded by the run's seed, made once.

Either way the test set is one draw with a fixed seed, so every evaluation of every run
sees the same binary test images.
- ``none``: grey levels, for Gaussian or continuous-Bernoulli likelihoods.

Dequantization (``dequantize=True``, grey levels only) turns the L grey levels k/(L − 1),
k ∈ {0, …, L − 1}, into a continuous variable on [0, 1)^D for continuous densities
(Uria et al. 2013; Theis et al. 2016):

    x̃ = (k + u) / L,   u ~ U[0, 1)^D,   and   log P(k) ≥ E_u[log p(x̃)] − D log L,

where −D log L is the change of variables from the unit cubes of the integer grid to the
cubes of side 1/L. The training set gets a fresh u every epoch; the test set is one seeded
draw, the same for every run.

Semi-supervised data: a named input may be missing for some training points — rows of NaN
(floats) or of −1 (integers, scikit-learn's mark of an unlabelled point). Such an input is a
:class:`Partial`: every mini-batch is all labelled or all unlabelled, and the program gets the
input as a tensor for a labelled batch and as ``None`` for an unlabelled one, as Pyro's
semi-supervised VAE (``ss_vae_M2.py``, ``model(xs, ys=None)``) expects; each epoch visits every
point once, its labelled batches spread evenly among the unlabelled ones (the data's own
proportion). The test split has the input for every point or for none (then every test batch
gets None), so that its numbers are of one quantity.

The epoch's permutation and its binarization come from generators seeded by (seed, epoch),
so the data a step sees is a pure function of the seed, the epoch and the step: a run
resumed from a checkpoint sees exactly what the uninterrupted run saw.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from ppl_vae.errors import UsageError, failure
from ppl_vae.generated import GENERATED

DATASETS = ("digits", "mnist", "fashion-mnist", "kmnist", *GENERATED)
CUSTOM = "custom"  # the name of tensors passed in from Python
BINARIZE = ("dynamic", "static", "none")
_TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
GREY_LEVELS = {"digits": 17, "mnist": 256, "fashion-mnist": 256, "kmnist": 256}  # L: digits are 0..16 / 16
DIGITS_TEST_SIZE = 297  # fixed seeded split of the 1797 bundled digits: 1500 train, 297 test
_SPLIT_SEED = 0  # the digits split never changes with the training seed
_TEST_DRAW_SEED = 1  # nor does the binary test set: every run is evaluated on the same images


@dataclass
class Dataset:
    """Train and test splits on one device.

    ``x_train`` holds grey levels for ``dynamic`` and ``none`` and the binary draw for
    ``static``; ``x_test`` is what every evaluation uses (the seeded draw when binarized).
    ``inputs_train`` / ``inputs_test``: named inputs, {name: tensor [N, ...]}, passed to the model
    and the guide by keyword with each batch (``y_train`` / ``y_test`` are class labels for the
    figures only, and are passed to nobody).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    image_shape: tuple[int, int, int]
    binarize: str = "none"
    seed: int = 0
    levels: int | None = None  # L grey levels when dequantized, else None
    inputs_train: dict = field(default_factory=dict)
    inputs_test: dict = field(default_factory=dict)
    source: tuple[str, str] | None = None  # (path, sha256) of the file load_file read, so a run can name it

    @property
    def x_shape(self) -> tuple[int, ...]:
        """The shape of one data point as the program receives it."""
        return tuple(self.x_train.shape[1:])

    @property
    def x_dim(self) -> int:
        """D, the number of values in one data point."""
        return math.prod(self.x_shape)

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def train_epoch(self, epoch: int) -> torch.Tensor:
        """The training tensor of this epoch: a fresh draw for ``dynamic`` or dequantization, else fixed."""
        if self.levels is None and self.binarize != "dynamic":
            return self.x_train
        # binarization and dequantization exclude each other, so they share one random stream
        g = epoch_generator(self.seed, epoch, self.device, "binarize")
        if self.levels is not None:
            return dequantized(self.x_train, self.levels, g)
        return torch.bernoulli(self.x_train, generator=g)

    def to(self, device) -> "Dataset":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, x_train=move(self.x_train), y_train=move(self.y_train),
                       x_test=move(self.x_test), y_test=move(self.y_test),
                       inputs_train={k: move(v) for k, v in self.inputs_train.items()},
                       inputs_test={k: move(v) for k, v in self.inputs_test.items()})

    @classmethod
    def from_tensors(cls, x_train, x_test=None, *, y_train=None, y_test=None, name=CUSTOM,
                     image_shape=None, binarize="none", seed=0, observed="x") -> "Dataset":
        """Wrap user tensors [N, ...]: the model and guide receive x in this shape — vectors [N, D],
        images [N, C, H, W], sequences [N, T, D] — and dtype (an integer tensor of word indices or counts
        stays integer; floats become float32; binarize them yourself or pass ``binarize``). Images
        [N, H, W] / [N, C, H, W] keep their shape in ``image_shape`` for the figures (set it for others).

        Either split may be a mapping of named tensors, ``{"x": images, "y": labels, "mask": m}``:
        the one named ``observed`` is the data x, every other is a named input [N, ...] that the
        model and the guide receive by keyword with each mini-batch (as they are: no dtype change)."""
        x_train, inputs_train = _named(x_train, observed, "training")
        x_test, inputs_test = _named(x_test, observed, "test")
        if x_test is not None and set(inputs_test) != set(inputs_train):
            raise UsageError(f"the test data has named inputs {sorted(inputs_test)} and the training data "
                             f"{sorted(inputs_train)}; pass the same names in both.")
        x_train, x_test = _observed(x_train), None if x_test is None else _observed(x_test)
        if x_train.dim() == 0:
            raise UsageError("training data must have one row per data point, [N, ...], not a scalar.")
        shape = tuple(x_train.shape[1:])
        if x_test is not None and (tuple(x_test.shape[1:]) != shape or x_test.dtype != x_train.dtype):
            raise UsageError(f"test data of shape {tuple(x_test.shape[1:])} ({x_test.dtype}) per point does not "
                             f"match the training data's {shape} ({x_train.dtype}); pass both in one shape and dtype.")
        if binarize != "none" and not x_train.is_floating_point():
            raise UsageError(f"binarization draws pixels from grey levels, and this data is {x_train.dtype}; pass "
                             f"binarize='none' (--binarize none) for integer data.")
        inputs_train = {k: _partial(k, v) for k, v in inputs_train.items()}
        for k, v in inputs_test.items():
            missing = missing_rows(v)
            if bool(missing.any()) and not bool(missing.all()):
                raise UsageError(f"the test data's {k!r} is missing (NaN / −1) for {int(missing.sum())} of "
                                 f"{v.shape[0]} points; the test set's numbers are of one quantity, so give {k!r} for "
                                 f"every test point or for none.")
        inputs_test = {k: _partial(k, v) for k, v in inputs_test.items()}  # missing for all: the program gets None
        if image_shape is None:
            image_shape = {0: (1, 1, 1), 1: (1, 1, *shape), 2: (1, *shape), 3: shape}.get(len(shape),
                                                                                    (1, 1, math.prod(shape)))
        return _binarized(cls(name, x_train, y_train, x_test, y_test, tuple(image_shape), binarize, seed,
                              inputs_train=inputs_train, inputs_test=inputs_test))


def _partial(name: str, v: torch.Tensor):
    """``v`` itself, or a :class:`Partial` when some of its rows mark a missing value."""
    missing = missing_rows(v)
    return Partial(name, v, ~missing) if bool(missing.any()) else v


def _observed(x) -> torch.Tensor:
    """x as a tensor in its own shape: floats as float32 (the parameters' dtype), other dtypes as they are."""
    x = torch.as_tensor(x)
    return x.float() if x.is_floating_point() else x


def _named(split, observed: str, which: str):
    """(x, {name: tensor}) of a split given as a tensor or as a mapping of named tensors."""
    if not isinstance(split, Mapping):
        return split, {}
    if observed not in split:
        raise UsageError(f"the {which} data names {', '.join(map(repr, split))} and no {observed!r}; name the "
                         f"observed tensor {observed!r} or pass observed='<its name>'.")
    x = torch.as_tensor(split[observed])
    inputs = {k: torch.as_tensor(v) for k, v in split.items() if k != observed}
    for k, v in inputs.items():
        if v.dim() == 0 or v.shape[0] != x.shape[0]:
            raise UsageError(f"named input {k!r} of the {which} data has shape {tuple(v.shape)}, not one row per "
                             f"data point ({x.shape[0]}); pass a tensor [{x.shape[0]}, ...].")
    return x, inputs


class Partial:
    """A named input given for some training points only (see the module doc): indexed by a batch's rows it
    is the tensor of those rows when every one is given, None when none is, and refused when they mix."""

    def __init__(self, name: str, values: torch.Tensor, given: torch.Tensor):
        self.name, self.values, self.given = name, values, given  # given: bool [N], on the values' device

    def to(self, device) -> "Partial":
        return Partial(self.name, self.values.to(device), self.given.to(device))

    def __getitem__(self, rows):
        given = self.given[rows]
        if bool(given.all()):
            return self.values[rows]
        if not bool(given.any()):
            return None
        raise UsageError(f"a batch mixes points with and without {self.name!r}; a semi-supervised input reaches "
                         f"the program whole or as None, so batch labelled and unlabelled points apart.")


def missing_rows(v: torch.Tensor) -> torch.Tensor:
    """bool [N]: the rows of ``v`` [N, ...] that mark a missing value — all NaN (floats) or all −1 (integers)."""
    rows = v.reshape(v.shape[0], -1)
    if v.is_floating_point():
        return rows.isnan().all(1) if rows.shape[1] else torch.zeros(v.shape[0], dtype=torch.bool)
    if v.dtype == torch.bool or not rows.shape[1]:
        return torch.zeros(v.shape[0], dtype=torch.bool, device=v.device)
    return (rows == -1).all(1)


def given_rows(inputs: dict) -> torch.Tensor | None:
    """bool [N]: the points that have every :class:`Partial` input, or None when no input is partial."""
    partial = [v for v in (inputs or {}).values() if isinstance(v, Partial)]
    if not partial:
        return None
    for other in partial[1:]:
        if not torch.equal(other.given, partial[0].given):
            raise UsageError(f"named inputs {partial[0].name!r} and {other.name!r} are missing for different points; "
                             f"a batch is all labelled or all unlabelled, so give both for the same points.")
    return partial[0].given


def batch_inputs(inputs: dict | None, idx) -> dict:
    """The rows ``idx`` of every named input (a :class:`Partial` one: its rows, or None where not given)."""
    return {k: v[idx] for k, v in (inputs or {}).items()}


def split(x, inputs: dict | None, batch: int):
    """(x_b, inputs_b) for consecutive batches of ``batch`` rows."""
    for start in range(0, x.shape[0], batch):
        rows = slice(start, start + batch)
        yield x[rows], batch_inputs(inputs, rows)


def epoch_generator(seed: int, epoch: int, device, purpose: str) -> torch.Generator:
    """A generator seeded by (seed, epoch, purpose), independent of the global RNG."""
    offset = {"permute": 0, "binarize": 1}[purpose]
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + epoch) * 2 + offset)
    return g


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = True) -> int:
    return max(1, n // batch_size) if drop_last else -(-n // batch_size)


def batches(n: int, batch_size: int, generator: torch.Generator, *, device, drop_last: bool = True, given=None):
    """Index tensors of one epoch's mini-batches: a permutation of range(n) split into chunks. With
    ``given`` (bool [n], :func:`given_rows`), the given and the other points are batched apart, and the
    given points' batches spread evenly among the others'."""
    perm = torch.randperm(n, generator=generator, device=device)
    if given is None:
        return list(perm.split(batch_size))[:steps_per_epoch(n, batch_size, drop_last)]
    groups = [perm[given.to(device)[perm] == flag] for flag in (True, False)]
    runs = [list(g.split(batch_size))[:steps_per_epoch(g.numel(), batch_size, drop_last)] if g.numel() else []
            for g in groups]
    place = sorted(((i + 0.5) / len(run), j, i) for j, run in enumerate(runs) for i in range(len(run)))
    return [runs[j][i] for _, j, i in place]


def epoch_steps(n: int, batch_size: int, drop_last: bool = True, given=None) -> int:
    """The number of mini-batches :func:`batches` makes of an epoch."""
    if given is None:
        return steps_per_epoch(n, batch_size, drop_last)
    sizes = [int(given.sum()), n - int(given.sum())]
    return sum(steps_per_epoch(m, batch_size, drop_last) for m in sizes if m)


def dequantized(x: torch.Tensor, levels: int, generator: torch.Generator) -> torch.Tensor:
    """(k + u) / L for grey levels x = k / (L − 1), with u ~ U[0, 1) drawn from ``generator``."""
    k = torch.round(x * (levels - 1))
    return (k + torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)) / levels


def load(name: str = "digits", *, data_dir: str = "data", download: bool = False, binarize: str = "dynamic",
         pad: int | None = None, seed: int = 0, device="cpu", dequantize: bool = False) -> Dataset:
    """Load a dataset by name; its splits end up on ``device``.

    ``pad`` (e.g. 32) zero-pads square images symmetrically to ``pad`` × ``pad`` pixels.
    ``dequantize`` adds uniform noise to the grey levels (needs ``binarize="none"``).
    """
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    if binarize not in BINARIZE:
        raise UsageError(f"unknown binarization {binarize!r}; choose one of {', '.join(BINARIZE)}.")
    if name in GENERATED:
        if pad is not None or dequantize:
            raise UsageError(f"--{'pad' if pad is not None else 'dequantize'} works on the image data sets, not on "
                             f"the generated {name} data; drop it.")
        return GENERATED[name](binarize, seed, device)
    if name == "digits":
        (xtr, ytr), (xte, yte) = _load_digits()
    else:
        xtr, ytr = _load_torchvision(name, data_dir, download, train=True)
        xte, yte = _load_torchvision(name, data_dir, download, train=False)
    if pad is not None:
        xtr, xte = _pad(xtr, pad), _pad(xte, pad)
    shape = (1, *xtr.shape[1:])
    flat = lambda x: x.reshape(x.shape[0], -1).to(device)  # noqa: E731
    ds = Dataset(name, flat(xtr), ytr.to(device), flat(xte), yte.to(device), shape, binarize, seed)
    if dequantize:
        if binarize != "none":
            raise UsageError("dequantization adds noise to grey levels, not to binary pixels; "
                             "pass --binarize none with --dequantize.")
        levels = GREY_LEVELS[name]
        test_draw = torch.Generator(device=ds.device).manual_seed(_TEST_DRAW_SEED)
        return replace(ds, x_test=dequantized(ds.x_test, levels, test_draw), levels=levels)
    return _binarized(ds)


FILE = "file"  # the dataset name of a run on a data file
FILE_TEST_SHARE = 0.2  # a data file without a split: this share of its points, a seeded draw, is the test set
FILE_SUFFIXES = (".pt", ".npz", ".safetensors")


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _read_tensors(path: str) -> dict:
    """{name: tensor} of a file, with no code run: torch's weights-only loader for .pt, numpy without
    pickle for .npz, safetensors (if installed) for .safetensors."""
    what = f"--data {path}"
    if not os.path.isfile(path):
        raise UsageError(f"{what}: there is no such file; pass a {', '.join(FILE_SUFFIXES)} file of named tensors.")
    suffix = os.path.splitext(path)[1]
    if suffix not in FILE_SUFFIXES:
        raise UsageError(f"{what}: a {suffix or 'suffix-less'} file is not read (it could hold code); save your "
                         f"tensors as {', '.join(FILE_SUFFIXES)}.")
    try:
        if suffix == ".pt":
            found = torch.load(path, map_location="cpu", weights_only=True)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                found = {k: torch.from_numpy(f[k]) for k in f.files}
        else:
            from safetensors.torch import load_file as load_safetensors
            found = load_safetensors(path)
    except ImportError:
        raise UsageError(f"{what}: reading .safetensors needs the safetensors package; pip install safetensors, or "
                         f"save the tensors as .pt or .npz.") from None
    except Exception as e:  # noqa: BLE001 — a corrupt or foreign file can fail in any way; say how
        raise UsageError(f"{what} could not be read as {suffix} of plain tensors ({failure(e)}); save a mapping of "
                         f"named tensors (no other objects) with torch.save, numpy.savez or safetensors.") from None
    ragged = next((k for k, v in found.items() if isinstance(v, (list, tuple)) and v
                   and all(torch.is_tensor(t) for t in v) and len({t.shape for t in v}) > 1),
                  None) if isinstance(found, Mapping) else None
    if ragged is not None:
        raise UsageError(f"{what}: {ragged!r} is a list of tensors of different shapes, sequences of different "
                         f"lengths perhaps; pad them into one tensor [N, T, ...] and save each one's length as "
                         f"'lengths' [N] beside it (the step-form models mask the steps past it).")
    if not isinstance(found, Mapping) or not found or not all(torch.is_tensor(v) for v in found.values()):
        raise UsageError(f"{what} holds {type(found).__name__}, not a mapping of named tensors; save "
                         f"{{'x': data, ...}} (or 'train/x', 'test/x', ...).")
    return dict(found)


def load_file(path: str, *, binarize: str = "none", seed: int = 0, device="cpu") -> Dataset:
    """A data set from a file of named tensors (:func:`_read_tensors`): ``x`` is the observed data in its
    own shape, every other name a named input the pair receives by keyword (labels, masks, lengths).
    Names ``train/NAME`` and ``test/NAME`` give the split; plain names are split here, a seeded
    :data:`FILE_TEST_SHARE` of the points (the same draw whatever the run's seed) for the test set."""
    tensors = _read_tensors(path)
    splits = {part: {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(part + "/")}
              for part in ("train", "test")}
    if splits["train"] or splits["test"]:
        other = [k for k in tensors if not k.startswith(("train/", "test/"))]
        if other or not splits["train"] or not splits["test"]:
            raise UsageError(f"--data {path} mixes split names (train/..., test/...) with {other[0] if other else 'only one split'}; "
                             f"name every tensor train/NAME and test/NAME, or none (then a fifth is held out).")
        train, test = splits["train"], splits["test"]
    else:
        n = next(iter(tensors.values())).shape[0] if tensors else 0
        if "x" in tensors:
            n = tensors["x"].shape[0]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(_SPLIT_SEED))
        held = order[:max(1, round(FILE_TEST_SHARE * n))] if n > 1 else order[:0]
        kept = order[held.numel():]
        for k, v in tensors.items():
            if v.dim() == 0 or v.shape[0] != n:
                raise UsageError(f"--data {path}: tensor {k!r} has shape {tuple(v.shape)}, not one row per data point "
                                 f"({n}); give every tensor a first dimension of {n}.")
        train, test = ({k: v[rows] for k, v in tensors.items()} for rows in (kept, held))
    data = Dataset.from_tensors(train, test, name=FILE, binarize=binarize, seed=seed).to(device)
    return replace(data, source=(os.path.abspath(path), file_digest(path)))


def _binarized(ds: Dataset) -> Dataset:
    """Apply the seeded draws that ``static`` (train and test) and ``dynamic`` (test) need."""
    if ds.binarize == "none":
        return ds
    if ds.x_train.min() < 0 or ds.x_train.max() > 1:
        raise UsageError("binarization needs grey levels in [0, 1]; rescale the data or use binarize='none'.")
    draw = lambda x, purpose_seed: None if x is None else torch.bernoulli(  # noqa: E731
        x, generator=torch.Generator(device=x.device).manual_seed(purpose_seed))
    x_test = draw(ds.x_test, _TEST_DRAW_SEED)
    x_train = draw(ds.x_train, ds.seed) if ds.binarize == "static" else ds.x_train
    return replace(ds, x_train=x_train, x_test=x_test)


def _pad(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if size < max(h, w):
        raise UsageError(f"--pad {size} is smaller than the {h}x{w} images; pass a size of at least {max(h, w)}.")
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(x, (left, size - w - left, top, size - h - top))


def _load_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images / 16.0, dtype=torch.float32)
    y = torch.tensor(bunch.target, dtype=torch.long)
    perm = torch.tensor(np.random.RandomState(_SPLIT_SEED).permutation(len(x)))
    test, train = perm[:DIGITS_TEST_SIZE], perm[DIGITS_TEST_SIZE:]
    return (x[train], y[train]), (x[test], y[test])


def _load_torchvision(name: str, data_dir: str, download: bool, train: bool):
    import torchvision

    cls_name = _TORCHVISION[name]
    raw = os.path.join(data_dir, cls_name, "raw")
    try:
        ds = getattr(torchvision.datasets, cls_name)(root=data_dir, train=train, download=download)
    except RuntimeError as e:
        if "not found" in str(e).lower():
            raise UsageError(f"{name} files were not found in {raw}; put the IDX files there "
                             f"or pass --download (with --data-dir to choose the folder).") from None
        raise UsageError(f"could not read {name} from {raw} ({e}); delete the folder and pass --download.") from None
    except (OSError, ValueError) as e:  # network failure while downloading, or truncated files
        what = "download" if download else "read"
        raise UsageError(f"could not {what} {name} into {raw} ({type(e).__name__}: {e}); "
                         f"check the network or place the IDX files there yourself.") from None
    return ds.data.float().div_(255.0), torch.as_tensor(ds.targets, dtype=torch.long)
