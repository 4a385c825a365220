"""A user's own log and features file, trained through the CLI: ``data=interactions features=file``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from tests.conftest import run_cli


def write_log(path: Path) -> None:
    """40 users, 10 interactions each over 12 items (ids 100..111), as a CSV with named columns."""
    rng = random.Random(0)
    rows = [(f"u{u}", 100 + rng.randrange(12), t) for u in range(40) for t in range(10)]
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))


def test_a_users_log_trains_with_its_features_file(tmp_path: Path) -> None:
    write_log(tmp_path / "log.csv")
    items = "".join(f"{100 + i},{'acme' if i % 3 else 'zeta'},{'a|b' if i % 2 else 'c'},{i}.5\n" for i in range(11))
    (tmp_path / "items.csv").write_text("item_id,brand,genres,price\n" + items + "999,acme,a,1\n")  # 111: no row
    run = tmp_path / "run"
    proc = run_cli(
        "recsys_attn.train",
        "data=interactions",
        f"data.source.path={tmp_path / 'log.csv'}",
        "features=file",
        f"features.path={tmp_path / 'items.csv'}",
        "+features.columns={brand: auto, genres: multi, price: {kind: numeric, scale: log}}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run}",
        "logger=none",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "model.max_len=8",
        "model.hidden_size=8",
        "model.bootstrap=0",
        "data.batch_size=32",
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["feature_spec"] == {
        "brand": {"kind": "categorical", "size": 4, "width": 1},  # acme, zeta + no item + missing
        "genres": {"kind": "multi", "size": 5, "width": 2},  # a, b, c + no item + missing
        "price": {"kind": "numeric", "size": 1, "width": 1},
    }
    for name in ("brand", "genres", "price"):
        assert any(f"layers.{name}." in key for key in ckpt["state_dict"]), name  # the feature's own layer
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/users"] == 40 and 0.0 <= metrics["test/ndcg@10"] <= 1.0
