"""Hardware: which torch device and numeric precision a run uses, and the allocator setting
that keeps updates fast on a CPU."""

from __future__ import annotations

import ctypes
import inspect
import logging

import torch

from dqn.config import ConfigError, Precision

log = logging.getLogger(__name__)


def resolve_device(
    name: str, precision: Precision = Precision.fp32, key: str = "hw.device"
) -> torch.device:
    """The torch device for `name` (the value of config key `key`), or ConfigError if this
    machine does not have it."""
    cpu = "hw=cpu" if key == "hw.device" else f"{key}=cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{key}={name} but PyTorch {torch.__version__} sees no CUDA GPU here: use "
                f"{cpu}, or install a CUDA build of PyTorch on a machine with an NVIDIA GPU."
            )
        device = torch.device(name)
        count = torch.cuda.device_count()
        if (device.index or 0) >= count:
            raise ConfigError(
                f"{key}={name} but only {count} CUDA device(s) exist here: use {key}=cuda:0."
            )
    elif name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(
                f"{key}=mps but Apple's Metal backend is not available here: use {cpu}."
            )
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if precision == Precision.fp16 and device.type != "cuda":
        raise ConfigError("hw.precision=fp16 needs a CUDA device: use fp32 or bf16 here.")
    return device


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX), read from the flags
    line of Linux's `cpuinfo`; False where there is no such file."""
    try:
        with open(cpuinfo) as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_has_native_bf16(device: torch.device) -> bool:
    """True when the CUDA device computes bfloat16 natively (compute capability 8.0 and up, or
    a ROCm GPU). `torch.cuda.is_bf16_supported()` with its default arguments also answers True
    where bfloat16 is only emulated (a T4), which is slower there than float16."""
    if "including_emulation" not in inspect.signature(torch.cuda.is_bf16_supported).parameters:
        # Older PyTorch releases lack the argument: read the compute capability directly.
        return bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8
    with torch.cuda.device(device):  # the function answers for the current device
        return torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_precision(precision: Precision, device: torch.device) -> Precision:
    """What `hw.precision=auto` means on this device; other values are kept as they are."""
    if precision != Precision.auto:
        return precision
    if device.type == "cuda":
        chosen = Precision.bf16 if cuda_has_native_bf16(device) else Precision.fp16
    elif device.type == "cpu" and cpu_has_native_bf16():
        chosen = Precision.bf16
    else:
        chosen = Precision.fp32
    log.info("hw.precision=auto: %s on this %s", chosen.value, device.type)
    return chosen


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks of up to 32 MiB in the heap instead of handing each back
    to the OS: every update allocates temporaries of a few MiB (weight casts, Adam's sqrt),
    and each one returned costs thousands of page faults when touched again (the speed-up is
    in docs/performance.md). No-op (False) where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


def flush_denormals() -> bool:
    """Have the CPU treat subnormal floats (below 1.2e-38) as zero. Adam's second moments of
    gradients that are nearly zero fall there, and x86 cores compute on subnormals many times
    slower: an Atari update took 38 ms with them and 29 ms without (docs/performance.md).
    Nothing a Q-network computes is changed by values that small. False where unsupported."""
    return torch.set_flush_denormal(True)
