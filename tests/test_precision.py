"""Precision and the CPU: `--mixed-precision auto` picks bf16 only where the CPU computes it natively, inference runs
bf16 there too (checked against fp32 on real reviews), and the CPU dropout's mask is drawn fast and right.

Whether this machine has native bf16 (AVX512-BF16 or AMX) is set (TEXTCLS_NATIVE_BF16) where a test depends on it,
so every test runs the same on either kind of CPU."""

from __future__ import annotations

import pytest
import torch

from textcls.device import cpu_has_native_bf16, resolve_mixed_precision
from textcls.errors import TextclsError

cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU rules apply where there is no GPU")


@pytest.fixture
def native_bf16(monkeypatch):
    """`native_bf16(True|False)`: pretend this CPU does (not) compute bf16 natively."""
    return lambda value: monkeypatch.setenv("TEXTCLS_NATIVE_BF16", "1" if value else "0")


@cpu_only
@pytest.mark.parametrize("native, auto", [(True, "bf16"), (False, "no")])
def test_auto_follows_the_cpu(native_bf16, native, auto):
    native_bf16(native)
    assert resolve_mixed_precision("auto") == auto
    assert resolve_mixed_precision("no") == "no"


@cpu_only
def test_bf16_without_native_support_is_refused(native_bf16):
    native_bf16(False)
    with pytest.raises(TextclsError, match="this CPU has no native bf16 .* use --mixed-precision no, or auto"):
        resolve_mixed_precision("bf16")
    native_bf16(True)
    assert resolve_mixed_precision("bf16") == "bf16"


def test_detection_matches_the_cpu_flags(monkeypatch):
    """torch's own check agrees with what the kernel reports in /proc/cpuinfo (Linux)."""
    from pathlib import Path

    monkeypatch.delenv("TEXTCLS_NATIVE_BF16")
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    flags = set(cpuinfo.read_text().split())
    assert cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


@cpu_only
def test_train_refuses_bf16_before_making_the_run(cli, train_argv, tmp_path, native_bf16):
    native_bf16(False)
    rc, err = cli.run(train_argv(tmp_path / "run", "--mixed-precision", "bf16"))
    assert rc == 2 and "textcls: error: --mixed-precision bf16: this CPU has no native bf16" in err
    assert not (tmp_path / "run").exists()


@cpu_only
def test_train_says_which_precision_auto_chose(cli, train_argv, tmp_path, native_bf16, caplog):
    native_bf16(False)
    with caplog.at_level("INFO", logger="textcls"):
        cli.ok(train_argv(tmp_path / "run", "--max-steps", "1", "--eval-strategy", "no", "--eval-splits"))
    assert "precision: fp32" in caplog.text


@cpu_only
def test_bf16_inference_agrees_with_fp32(trained_run, small_imdb, native_bf16, cli):
    """On 60 real reviews: probabilities within 0.02 of fp32's (bf16 keeps 8 bits of mantissa) and the same label
    wherever fp32's decision is not within that of the boundary; evaluate says which precision ran."""
    import pandas as pd

    from textcls.infer import load_trained

    native_bf16(True)  # on a CPU without native bf16 torch emulates it: slow, but exact enough to test
    texts = pd.read_parquet(small_imdb / "test.parquet")["text"].tolist()
    fp32 = load_trained(trained_run, precision="no").logits(texts).softmax(-1)  # (60, 2)
    bf16_model = load_trained(trained_run, precision="auto")
    assert bf16_model.precision == "bf16"
    bf16 = bf16_model.logits(texts).softmax(-1)
    assert (bf16 - fp32).abs().max() < 0.02
    clear = (fp32[:, 1] - 0.5).abs() > 0.02
    assert torch.equal(bf16.argmax(-1)[clear], fp32.argmax(-1)[clear])
    result = cli.json("evaluate", str(trained_run), "--data", str(small_imdb), "--mixed-precision", "bf16")
    assert result["precision"] == "bf16"
    assert cli.json("evaluate", str(trained_run), "--data", str(small_imdb), "--mixed-precision", "no")[
        "precision"] == "fp32"


# ------------------------------------------------------------------------------------------- the CPU dropout

def test_dropout_keeps_1_minus_p_and_the_mean():
    from textcls.model.encoder import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.2).train()
    x = torch.ones(1000, 1000)
    y = drop(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - 0.8) < 0.002  # 10^6 draws: the standard error is 0.0004
    assert torch.all((y == 0) | torch.isclose(y, torch.tensor(1 / 0.8)))
    assert abs(y.mean().item() - 1) < 0.003
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x) and torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_dropout_gradient_is_the_mask_and_the_seed_repeats_it():
    from textcls.model.encoder import Dropout

    x = torch.randn(64, 128, requires_grad=True)
    torch.manual_seed(1)
    y = Dropout(0.3).train()(x)
    y.sum().backward()
    mask = (y != 0).float()
    torch.testing.assert_close(x.grad, mask / 0.7)
    torch.manual_seed(1)
    assert torch.equal(Dropout(0.3).train()(x), y)
    assert x.grad.dtype == torch.float32 and Dropout(0.3).train()(x.bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_keeps_1_minus_p_in_both_halves_of_each_draw(p):
    # one 31-bit integer gives two elements their bits (16 and 15, thresholds of their own): both must keep 1 - p,
    # also for an odd count (the last draw is half used)
    from textcls.model.encoder import keep_mask

    torch.manual_seed(0)
    keep = keep_mask(torch.Size([1001, 999]), p).float()
    assert keep.shape == (1001, 999)
    even, odd = keep.view(-1)[0::2], keep.view(-1)[1::2]
    for half in (even, odd):  # 5 * 10^5 draws each: the standard error is under 0.0008
        assert abs(half.mean().item() - (1 - p)) < 0.004
    # neighbours are independent: as often both kept as chance says
    assert abs((even[:-1] * odd).mean().item() - (1 - p) ** 2) < 0.004


def test_dropout_too_close_to_1_for_15_bits_is_torch_dropout():
    from textcls.model.encoder import Dropout

    x = torch.ones(100, 100)
    torch.manual_seed(0)
    y = Dropout(1 - 2 ** -20).train()(x)
    torch.manual_seed(0)
    assert torch.equal(y, torch.nn.functional.dropout(x, 1 - 2 ** -20, training=True))
