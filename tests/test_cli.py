"""The main job, `flowdip demo`, end to end on its quick instance."""

import pytest

from flowdip.cli import main


@pytest.mark.slow
def test_demo_writes_its_figures_and_the_slope_is_one(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("loss.png", "gap.png", "gap_vs_step_size.png", "summary.png", "summary.txt"):
        path = tmp_path / name
        assert path.exists() and path.stat().st_size > 500, name
        assert str(path) in out
    table = (tmp_path / "summary.txt").read_text()
    slope = float(table.split("fitted log-log slope ")[1].split()[0])
    assert abs(slope - 1) < 0.1
    assert table.count("The stop rule was met.") == 4


def test_demo_rejects_bad_options(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--step-sizes", "1,-2"])
    assert "positive" in capsys.readouterr().err
    assert main(["demo", "--k", "0"]) == 2
