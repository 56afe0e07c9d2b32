"""`recommend-all --out` is written whole: a SIGKILL at any point leaves the old file or the new one."""

from __future__ import annotations

import pytest

from collabkit.checkpoint import save_model
from collabkit.cli import app
from collabkit.models.dot import DotProductBias
from tests.conftest import make_ratings
from tests.crash import kill_at_every_step, kill_at_random_times


def _run(model_dir, out, n: int) -> None:
    app(["recommend-all", str(model_dir), "--out", str(out), "-n", str(n), "--include-seen", "--no-explain", "--json"],
        standalone_mode=False)  # fmt: skip


@pytest.mark.slow
def test_sigkill_during_recommend_all_leaves_old_or_new_file(tmp_path, capsys):
    model = DotProductBias.from_data(make_ratings(2000, 200, density=0.02), n_factors=8)
    save_model(model, tmp_path / "m")
    out = tmp_path / "recs.csv"
    _run(tmp_path / "m", out, 30)
    old = out.read_bytes()
    _run(tmp_path / "m", out, 40)
    new = out.read_bytes()
    assert len(new) > len(old)
    out.write_bytes(old)

    def check() -> str:
        now = out.read_bytes()
        assert now in (old, new), f"a partial file of {len(now)} bytes"
        out.write_bytes(old)
        for leftover in tmp_path.glob(
            ".recs.csv.tmp-*"
        ):  # what a killed writer leaves is only ever a temporary
            leftover.unlink()
        return "old" if now == old else "new"

    outcomes = kill_at_every_step(lambda: _run(tmp_path / "m", out, 40), check)
    capsys.readouterr()
    assert outcomes[0] == "old" and outcomes[-1] == "new"
    assert outcomes == sorted(outcomes, reverse=True), "once the new file is in place it stays"
    kill_at_random_times(lambda: _run(tmp_path / "m", out, 40), check, n_kills=20)  # check: whole
    capsys.readouterr()
