"""What the CPU can do, read from the machine rather than assumed (machines differ from run to run)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
"""CPU flags of native bf16 arithmetic: x86 AVX-512 BF16 and AMX (``flags``), Arm's FEAT_BF16 (``Features``)."""


def cpu_bf16_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The bf16 flags ``cpuinfo`` reports (empty: none, bf16 is emulated); None where it cannot be read or
    lists no flags."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    flags: set[str] = set()
    listed = False  # a cpuinfo without a flags line (ppc64le, s390x, some VMs) says nothing about bf16
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            listed = True
            flags.update(value.split())
    return frozenset(flags & BF16_FLAGS) if listed else None


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
