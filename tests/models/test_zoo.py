from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench.errors import CheckpointError, InvalidArgumentError


def test_lenet_held_out_accuracy(
    lenet: fb.models.TorchClassifier, digits_test: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = digits_test
    acc = (lenet.predict(x) == y).float().mean().item()
    assert acc >= 0.97, acc


def test_digit_splits_are_disjoint_and_balanced() -> None:
    xtr, _ytr = fb.models.mnist_digits("train")
    xte, yte = fb.models.mnist_digits("test")
    assert xtr.shape == (4000, 1, 28, 28) and xte.shape == (1000, 1, 28, 28)
    assert torch.bincount(yte).tolist() == [100] * 10
    assert float(xte.min()) >= 0 and float(xte.max()) <= 1
    # no held-out image appears in the training split
    train_keys = {hash(t.numpy().tobytes()) for t in xtr}
    assert sum(hash(t.numpy().tobytes()) in train_keys for t in xte) == 0


def test_digits_bad_split() -> None:
    with pytest.raises(InvalidArgumentError, match="split must be one of"):
        fb.models.mnist_digits("validation")


def test_zoo_and_load_model() -> None:
    assert set(fb.models.zoo()) == {"lenet-mnist", "lenet-mnist-noise-trained", "efficientnet-lite0"}
    with pytest.raises(InvalidArgumentError, match="model must be one of 'lenet-mnist'"):
        fb.models.load_model("resnet")


def test_efficientnet_lite0_real_photos(capsys: pytest.CaptureFixture[str]) -> None:
    clf = fb.models.efficientnet_lite0(image_size=96)
    x, y = fb.models.imagenet_photos(96)
    assert clf.predict(x).tolist() == y.tolist()
    assert clf.class_names[285] == "Egyptian cat"
    assert capsys.readouterr().out == ""  # the third-party debug prints are silenced


def test_efficientnet_lite0_bf16_agrees_with_fp32() -> None:
    clf = fb.models.efficientnet_lite0(image_size=96)
    x, y = fb.models.imagenet_photos(96)
    ref = clf.log_probs(x)
    fast = clf.replace(precision="bf16")
    lp = fast.log_probs(x)
    # stated tolerance (measured 0.054 and 0.032 on this CPU): top-class log-probability within 0.15,
    # every probability within 0.1, the same predictions
    assert float((lp - ref).gather(1, y[:, None]).abs().max()) <= 0.15
    assert float((lp.exp() - ref.exp()).abs().max()) <= 0.1
    assert lp.argmax(1).tolist() == y.tolist()
    torch.testing.assert_close(fast.reference().log_probs(x), ref)


def test_foreign_weights_file_refused(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "bad.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="could not load weights"):
        fb.models.load_state_dict(path)


def test_noise_trained_lenet_in_the_zoo(digits_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    clf = fb.models.load_model("lenet-mnist-noise-trained")
    info = fb.models.zoo()["lenet-mnist-noise-trained"]
    assert info.factory is fb.models.lenet_mnist_noise_trained and info.input_shape == clf.input_shape
    x, y = digits_test
    assert float((clf.predict(x) == y).double().mean()) >= 0.98
    noise = torch.rand(256, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    # trained for it (outlier exposure): noise gets low confidence, where the shipped LeNet calls it an 8
    assert float(clf.probs(noise).max(1).values.median()) < 0.5
    assert float(fb.models.lenet_mnist().probs(noise).max(1).values.median()) > 0.9


def test_efficientnet_lite0_channels_last_by_default_same_scores() -> None:
    fast = fb.models.efficientnet_lite0(image_size=96)
    plain = fb.models.efficientnet_lite0(image_size=96, channels_last=False)
    assert fast.channels_last and not plain.channels_last
    assert fast.network()._conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    x, _ = fb.models.imagenet_photos(96)
    torch.testing.assert_close(fast.log_probs(x), plain.log_probs(x), atol=2e-4, rtol=0)
    with pytest.raises(InvalidArgumentError, match="precision"):
        fb.models.efficientnet_lite0(image_size=96, precision="fp8")


def test_efficientnet_lite0_default_chunk_by_device_and_precision() -> None:
    # cache-sized chunks on a CPU (bench_models.py), large ones on a GPU; an explicit size wins
    assert fb.models.efficientnet_lite0(image_size=96).batch_size == 4
    assert fb.models.efficientnet_lite0(image_size=96, precision="bf16").batch_size == 8
    assert fb.models.efficientnet_lite0(image_size=96, batch_size=32).batch_size == 32
    assert fb.models.default_chunk(torch.device("cuda"), "fp32") == fb.models.default_chunk("cuda:1", "bf16") == 256
    with pytest.raises(InvalidArgumentError, match="device must be a torch device"):
        fb.models.default_chunk("tpu9", "fp32")
    with pytest.raises(InvalidArgumentError, match="device"):
        fb.models.efficientnet_lite0(image_size=96, device="tpu9")
    clf = fb.models.efficientnet_lite0(image_size=96)
    x, _ = fb.models.imagenet_photos(96)
    x = torch.cat([x, x.flip(3), x.flip(2)])  # 9 images: two full chunks of 4 and one of 1
    torch.testing.assert_close(clf.log_probs(x), clf.replace(batch_size=9).log_probs(x), atol=2e-4, rtol=0)
