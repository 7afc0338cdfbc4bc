import pytest
import torch

from ppl_vae import data
from ppl_vae.errors import UsageError


def test_digits_split_is_fixed_and_in_range():
    a = data.load("digits", binarize="none", seed=0)
    b = data.load("digits", binarize="none", seed=5)
    assert a.x_train.shape == (1797 - data.DIGITS_TEST_SIZE, 64)
    assert a.x_test.shape == (data.DIGITS_TEST_SIZE, 64)
    assert a.image_shape == (1, 8, 8)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert 0.0 <= a.x_train.min() and a.x_train.max() == 1.0
    assert set(a.y_test.tolist()) == set(range(10))


def test_dynamic_binarization_is_fresh_each_epoch_and_reproducible(digits):
    e0, e0_again, e1 = digits.train_epoch(0), digits.train_epoch(0), digits.train_epoch(1)
    assert set(e0.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(e0, e0_again)
    assert not torch.equal(e0, e1)
    # a Bernoulli draw of the grey levels: the mean agrees within a few standard errors
    n = e0.numel()
    p = digits.x_train.mean().item()
    assert abs(e0.mean().item() - p) < 4 * (p * (1 - p) / n) ** 0.5


def test_static_binarization_is_one_draw_and_test_set_is_shared():
    s0 = data.load("digits", binarize="static", seed=0)
    s1 = data.load("digits", binarize="static", seed=1)
    dyn = data.load("digits", binarize="dynamic", seed=3)
    assert torch.equal(s0.train_epoch(0), s0.train_epoch(7))
    assert not torch.equal(s0.x_train, s1.x_train)
    assert torch.equal(s0.x_test, s1.x_test) and torch.equal(s0.x_test, dyn.x_test)
    assert set(s0.x_test.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("drop_last", [True, False])
def test_batches_partition_the_permutation(drop_last):
    g = torch.Generator().manual_seed(0)
    chunks = data.batches(103, 10, g, device="cpu", drop_last=drop_last)
    assert len(chunks) == data.steps_per_epoch(103, 10, drop_last)
    seen = torch.cat(chunks)
    assert len(set(seen.tolist())) == seen.numel()
    assert seen.numel() == (100 if drop_last else 103)
    assert all(c.numel() == 10 for c in chunks[:10])


def test_batch_order_depends_on_seed_and_epoch_only():
    order = lambda s, e: torch.cat(data.batches(50, 7, data.epoch_generator(s, e, "cpu", "permute"), device="cpu"))
    assert torch.equal(order(0, 3), order(0, 3))
    assert not torch.equal(order(0, 3), order(0, 4))
    assert not torch.equal(order(0, 3), order(1, 3))


def test_pad_centres_the_image():
    ds = data.load("digits", binarize="none", pad=12)
    assert ds.image_shape == (1, 12, 12)
    img = ds.x_train[0].reshape(12, 12)
    plain = data.load("digits", binarize="none").x_train[0].reshape(8, 8)
    assert torch.equal(img[2:10, 2:10], plain)
    assert img[:2].abs().sum() == 0 and img[:, 10:].abs().sum() == 0
    with pytest.raises(UsageError, match="smaller than"):
        data.load("digits", pad=4)


def test_mnist_idx_files_are_read_through_torchvision(tiny_mnist):
    ds = data.load("mnist", data_dir=str(tiny_mnist), binarize="none")
    assert ds.x_train.shape == (20, 784) and ds.x_test.shape == (10, 784)
    assert ds.image_shape == (1, 28, 28)
    assert ds.y_train.dtype == torch.long and ds.y_train.max() < 10
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1


def test_missing_files_name_the_folder_and_the_flag(tmp_path):
    with pytest.raises(UsageError) as err:
        data.load("fashion-mnist", data_dir=str(tmp_path))
    message = str(err.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message and "--download" in message


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UsageError, match="digits, mnist"):
        data.load("cifar")
    with pytest.raises(UsageError, match="dynamic, static, none"):
        data.load("digits", binarize="sometimes")


def test_from_tensors_checks_shape_and_range():
    ds = data.Dataset.from_tensors(torch.rand(30, 4), torch.rand(10, 4), binarize="static")
    assert set(ds.x_train.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(UsageError, match=r"one row per data point, \[N, ...\]"):
        data.Dataset.from_tensors(torch.tensor(3.0))
    with pytest.raises(UsageError, match="--binarize none"):
        data.Dataset.from_tensors(torch.randint(0, 5, (30, 4)), binarize="dynamic")
    with pytest.raises(UsageError, match="does not match the training data's"):
        data.Dataset.from_tensors(torch.rand(3, 16), torch.rand(2, 4, 4))


def test_from_tensors_keeps_the_shape_and_dtype_the_program_takes(digits):
    images = digits.x_train[:12].reshape(12, 1, 8, 8)
    ds = data.Dataset.from_tensors(images, digits.x_test[:5].reshape(5, 1, 8, 8))
    assert ds.image_shape == (1, 8, 8) and ds.x_dim == 64 and ds.x_shape == (1, 8, 8)
    assert torch.equal(ds.x_train, images) and ds.x_test.shape == (5, 1, 8, 8)
    grey = data.Dataset.from_tensors(torch.rand(7, 8, 8))  # [N, H, W]: one channel
    assert grey.image_shape == (1, 8, 8) and grey.x_train.shape == (7, 8, 8)
    words = torch.randint(0, 50, (9, 6, 4))  # [N, T, ...] integer indices stay integer, any rank
    seq = data.Dataset.from_tensors(words)
    assert seq.x_train.dtype == torch.int64 and torch.equal(seq.x_train, words) and seq.x_dim == 24
    assert data.Dataset.from_tensors(torch.rand(5, 3, dtype=torch.float64)).x_train.dtype == torch.float32
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        data.Dataset.from_tensors(torch.randn(30, 4) * 5, binarize="dynamic")


def test_a_label_missing_for_some_points_batches_them_apart_and_reaches_the_program_as_none():
    labels = torch.arange(10, dtype=torch.long)
    labels[[1, 4, 5, 6, 8, 9]] = -1  # scikit-learn's mark of an unlabelled point
    ds = data.Dataset.from_tensors({"x": torch.rand(10, 3), "y": labels}, {"x": torch.rand(4, 3), "y": torch.arange(4)})
    given = data.given_rows(ds.inputs_train)
    assert given.tolist() == [True, False, True, True, False, False, False, True, False, False]
    assert data.batch_inputs(ds.inputs_train, torch.tensor([0, 2]))["y"].tolist() == [0, 2]
    assert data.batch_inputs(ds.inputs_train, torch.tensor([1, 4]))["y"] is None
    with pytest.raises(UsageError, match="mixes points with and without 'y'"):
        data.batch_inputs(ds.inputs_train, torch.tensor([0, 1]))
    chunks = data.batches(10, 2, torch.Generator().manual_seed(0), device="cpu", given=given)
    assert sorted(torch.cat(chunks).tolist()) == list(range(10))  # every point once
    kinds = [bool(given[c].all()) for c in chunks]
    assert all(bool(given[c].all()) or not bool(given[c].any()) for c in chunks)
    assert kinds == [False, True, False, True, False]  # the 2 labelled batches spread among the 3 others
    assert data.epoch_steps(10, 2, given=given) == len(chunks)
    one_hot = torch.eye(3)[[0, 1, 2, 0]]
    one_hot[1] = float("nan")  # a float input: NaN rows are missing
    assert data.given_rows({"y": data._partial("y", one_hot)}).tolist() == [True, False, True, True]
    with pytest.raises(UsageError, match="for every test point or for none"):
        data.Dataset.from_tensors({"x": torch.rand(4, 3), "y": labels[:4]}, {"x": torch.rand(2, 3), "y": labels[:2]})
