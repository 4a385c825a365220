"""What the CPU can do, read from the machine rather than assumed (machines differ from run to run)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
"""CPU flags of native bf16 arithmetic: x86 AVX-512 BF16 and AMX (``flags``), Arm's FEAT_BF16 (``Features``)."""


def _cpuinfo_fields(cpuinfo: Path) -> tuple[str, frozenset[str] | None] | None:
    """The first ``model name`` and the union of the ``flags``/``Features`` lines of ``cpuinfo`` (None where no
    such line exists: ppc64le, s390x, some VMs); None where it cannot be read."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    model, flags, listed = "", set[str](), False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features"):
            listed = True
            flags.update(value.split())
        elif key == "model name" and not model:
            model = value.strip()
    return model, frozenset(flags) if listed else None


def cpu_bf16_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The bf16 flags ``cpuinfo`` reports (empty: none, bf16 is emulated); None where it cannot be read or
    lists no flags."""
    fields = _cpuinfo_fields(cpuinfo)
    flags = fields[1] if fields else None
    return None if flags is None else flags & BF16_FLAGS


VECTOR_UNITS = (
    ("AMX", frozenset({"amx_bf16", "amx_tile"})),
    ("AVX-512 BF16", frozenset({"avx512_bf16"})),
    ("AVX-512", frozenset({"avx512f"})),
    ("AVX2", frozenset({"avx2"})),
    ("BF16", frozenset({"bf16"})),  # Arm FEAT_BF16
    ("NEON", frozenset({"asimd"})),
)
"""The widest vector unit a CPU flag names, widest first: what decides how fp32 and bf16 results round and how
fast a step runs (benchmarks/RESULTS.md)."""


def cpu_description(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name and its widest vector unit, e.g. ``Intel(R) Xeon(R) Processor, AMX``; empty where
    ``cpuinfo`` cannot be read. Benchmark rows carry it: one VM name has been seen on an AMD and an Intel CPU."""
    fields = _cpuinfo_fields(cpuinfo)
    if fields is None:
        return ""
    model, flags = fields
    unit = next((name for name, named in VECTOR_UNITS if flags and flags & named), "")
    return ", ".join(part for part in (model, unit) if part)


def warn_if_bf16_is_emulated(precision: str, on_cpu: bool, cpuinfo: Path = CPUINFO) -> bool:
    """Log a warning when a bf16 ``precision`` runs on a CPU without bf16 instructions; True when it warned.

    There bf16 is converted to and from fp32 around every product: a full-size SASRec training step took
    2.3x as long as in fp32 on an AVX2 CPU (benchmarks/RESULTS.md, ``profile_step.py --bf16``).
    """
    if not on_cpu or "bf16" not in precision or cpu_bf16_flags(cpuinfo) != frozenset():
        return False
    log.warning(
        "trainer.precision=%s on a CPU without bf16 instructions (%s reports none of %s): bf16 is emulated "
        "here and slower than fp32 (a SASRec step took 2.3x as long on an AVX2 CPU); use trainer.precision=32-true",
        precision,
        cpuinfo,
        ", ".join(sorted(BF16_FLAGS)),
    )
    return True
