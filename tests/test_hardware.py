"""dqn/hardware.py: the device a config asks for and what `hw.precision=auto` picks on it.

The GPU answers are stubbed (torch.cuda, torch.backends.mps), so every case runs on any machine;
the real CUDA and MPS calls are left to the machines that have them.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
import torch

from dqn.config import ConfigError, Precision
from dqn.hardware import (
    cpu_has_native_bf16,
    cuda_has_native_bf16,
    keep_freed_memory,
    resolve_device,
    resolve_precision,
)


def one_sentence(message: str) -> bool:
    """A single sentence: one full stop, at the end (dots inside names and numbers aside)."""
    return message.endswith(".") and not re.search(r"\.\s", message)


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine with neither CUDA nor Apple's Metal backend."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def fake_cuda(monkeypatch, capability: tuple[int, int], devices: int = 1) -> None:
    """Stub one or more CUDA GPUs of compute `capability` (8.0 and up computes bf16 natively,
    below it PyTorch emulates bf16 and its default `is_bf16_supported()` still says True)."""

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return capability[0] >= 8 or including_emulation

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: devices)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())


def test_cpu_is_always_there(no_gpu):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cpu", Precision.bf16) == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_asked_for_where_there_is_none_is_one_sentence(no_gpu, name):
    with pytest.raises(ConfigError) as error:
        resolve_device(name)
    message = str(error.value)
    assert message.startswith(f"hw.device={name} but PyTorch") and "use hw=cpu" in message
    assert one_sentence(message), message


def test_the_key_named_is_the_callers(no_gpu):
    """scripts/evaluate.py passes its own key, `device`."""
    with pytest.raises(ConfigError, match=r"^device=cuda .*use device=cpu"):
        resolve_device("cuda", key="device")


def test_mps_asked_for_where_there_is_none_is_one_sentence(no_gpu):
    with pytest.raises(ConfigError) as error:
        resolve_device("mps")
    message = str(error.value)
    assert message.startswith("hw.device=mps but") and "use hw=cpu" in message
    assert one_sentence(message), message


def test_cuda_and_mps_where_they_exist(monkeypatch):
    fake_cuda(monkeypatch, (8, 0), devices=2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1", Precision.fp16) == torch.device("cuda:1")
    assert resolve_device("mps") == torch.device("mps")


def test_a_cuda_index_beyond_the_gpus_is_one_sentence(monkeypatch):
    fake_cuda(monkeypatch, (8, 0), devices=1)
    with pytest.raises(ConfigError) as error:
        resolve_device("cuda:1")
    message = str(error.value)
    assert message.startswith("hw.device=cuda:1 but only 1 CUDA device") and "cuda:0" in message
    assert one_sentence(message), message


@pytest.mark.parametrize("name", ["cpu", "mps"])
def test_fp16_needs_cuda(monkeypatch, name):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    with pytest.raises(ConfigError, match=r"^hw.precision=fp16 needs a CUDA device") as error:
        resolve_device(name, Precision.fp16)
    assert one_sentence(str(error.value))


@pytest.mark.parametrize("precision", [Precision.fp32, Precision.bf16, Precision.fp16])
def test_an_explicit_precision_is_kept(monkeypatch, precision):
    fake_cuda(monkeypatch, (7, 5))
    for device in ("cpu", "cuda", "mps"):
        assert resolve_precision(precision, torch.device(device)) is precision


@pytest.mark.parametrize(
    ("gpu", "capability", "expected"),
    [
        ("A100", (8, 0), Precision.bf16),
        ("L4", (8, 9), Precision.bf16),
        ("H100", (9, 0), Precision.bf16),
        ("T4", (7, 5), Precision.fp16),  # emulated bf16 only: the default query says True
        ("V100", (7, 0), Precision.fp16),
    ],
)
def test_auto_on_cuda_takes_bf16_only_where_it_is_native(monkeypatch, gpu, capability, expected):
    fake_cuda(monkeypatch, capability)
    assert torch.cuda.is_bf16_supported()  # the emulation answer the choice must not follow
    assert resolve_precision(Precision.auto, torch.device("cuda")) is expected


@pytest.mark.parametrize(("capability", "native"), [((7, 5), False), ((8, 6), True)])
def test_native_bf16_on_older_pytorch_reads_the_compute_capability(monkeypatch, capability, native):
    """PyTorch releases without `including_emulation`: the capability decides."""
    fake_cuda(monkeypatch, capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.version, "hip", None)
    assert cuda_has_native_bf16(torch.device("cuda")) is native


def test_auto_on_mps_is_fp32():
    assert resolve_precision(Precision.auto, torch.device("mps")) is Precision.fp32


def cpuinfo(tmp_path: Path, flags: str) -> Path:
    """A two-core Linux /proc/cpuinfo with `flags`."""
    core = f"processor\t: {{}}\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n\n"
    path = tmp_path / "cpuinfo"
    path.write_text(core.format(0) + core.format(1))
    return path


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu sse2 avx2 avx512f avx512_bf16", True),  # AMD Zen 4, Intel Cooper Lake
        ("fpu sse2 avx2 avx512f amx_bf16 amx_tile", True),  # Intel Sapphire Rapids
        ("fpu sse2 avx2 avx512f avx512bw", False),  # AVX-512 without its bf16 instructions
        ("fpu sse2 avx2", False),  # AMD Zen 3
    ],
)
def test_cpu_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    assert cpu_has_native_bf16(str(cpuinfo(tmp_path, flags))) is native


def test_cpu_bf16_is_false_without_cpuinfo(tmp_path):
    """macOS and Windows have no /proc/cpuinfo: auto stays in fp32 there."""
    assert cpu_has_native_bf16(str(tmp_path / "missing")) is False


@pytest.mark.parametrize(("native", "expected"), [(True, Precision.bf16), (False, Precision.fp32)])
def test_auto_on_cpu_follows_the_flags(monkeypatch, native, expected):
    monkeypatch.setattr("dqn.hardware.cpu_has_native_bf16", lambda: native)
    assert resolve_precision(Precision.auto, torch.device("cpu")) is expected


def test_auto_on_this_cpu_matches_its_flags():
    """The real /proc/cpuinfo (where there is one) gives the answer the flags give."""
    expected = Precision.bf16 if cpu_has_native_bf16() else Precision.fp32
    assert resolve_precision(Precision.auto, torch.device("cpu")) is expected


def test_keep_freed_memory_answers_without_failing():
    """True under glibc, False elsewhere; either way the process goes on."""
    assert isinstance(keep_freed_memory(), bool)
