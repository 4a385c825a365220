"""Reading the CPU's bf16 support from /proc/cpuinfo, and the warning when bf16 would be emulated."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pytest

from recsys_attn.run import runner
from recsys_attn.run.hardware import cpu_bf16_flags, cpu_description, warn_if_bf16_is_emulated

X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx avx2 fma\n"
X86_AMX = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
AMD_BF16 = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: avx2 avx512f avx512_bf16\n"
INTEL = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: avx2 avx512f amx_tile amx_bf16\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\nCPU implementer\t: 0x41\n"
POWER = "processor\t: 0\ncpu\t\t: POWER9, altivec supported\n"


def cpuinfo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (X86_AVX2, frozenset()),
        (X86_AMX, frozenset({"avx512_bf16", "amx_bf16"})),
        (ARM_BF16, frozenset({"bf16"})),
        (POWER, None),  # no flags line: unknown, not "no bf16"
    ],
)
def test_bf16_flags_are_read_from_cpuinfo(tmp_path: Path, text: str, expected: frozenset[str] | None) -> None:
    assert cpu_bf16_flags(cpuinfo(tmp_path, text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (INTEL, "Intel(R) Xeon(R) Processor, AMX"),
        (AMD_BF16, "AMD EPYC 9R14, AVX-512 BF16"),  # one VM name has been seen on both: the rows must differ
        (X86_AVX2, "AVX2"),  # no model name line
        (ARM_BF16, "BF16"),
        (POWER, ""),  # neither a model name nor flags
    ],
)
def test_cpu_description_names_the_model_and_widest_vector_unit(tmp_path: Path, text: str, expected: str) -> None:
    assert cpu_description(cpuinfo(tmp_path, text)) == expected


def test_unreadable_cpuinfo_is_unknown_not_absent(tmp_path: Path) -> None:
    assert cpu_bf16_flags(tmp_path / "missing") is None
    assert cpu_description(tmp_path / "missing") == ""
    assert not warn_if_bf16_is_emulated("bf16-mixed", True, tmp_path / "missing")  # unknown: no claim made


@pytest.mark.parametrize(
    ("precision", "on_cpu", "text", "warns"),
    [
        ("bf16-mixed", True, X86_AVX2, True),
        ("bf16-true", True, X86_AVX2, True),
        ("32-true", True, X86_AVX2, False),
        ("bf16-mixed", False, X86_AVX2, False),  # a GPU's bf16 is its own business
        ("bf16-mixed", True, X86_AMX, False),
        ("bf16-mixed", True, ARM_BF16, False),
    ],
)
def test_warns_only_when_bf16_runs_emulated_on_the_cpu(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, precision: str, on_cpu: bool, text: str, warns: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="recsys_attn.run.hardware"):
        assert warn_if_bf16_is_emulated(precision, on_cpu, cpuinfo(tmp_path, text)) is warns
    assert ("without bf16 instructions" in caplog.text) is warns
    if warns:
        assert f"trainer.precision={precision}" in caplog.text and "32-true" in caplog.text


def test_check_trainer_passes_the_trainers_precision_and_device(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[tuple[str, bool]] = []
    monkeypatch.setattr(runner, "warn_if_bf16_is_emulated", lambda p, cpu: seen.append((p, cpu)) or False)
    runner.check_trainer(L.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, default_root_dir=tmp_path))
    assert seen == [("bf16-mixed", True)]
