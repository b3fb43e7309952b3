"""The `flowdip` command: the main job (`flowdip demo`) end to end on its quick instance, and
for every experiment its own options (generated from its `Options`), `list`, `plot`,
`--version`, the output-folder rule and bad values."""

import importlib.metadata
import json
import subprocess
import sys

import pytest

from flowdip import cli
from flowdip.cli import main
from flowdip.experiments import EXPERIMENTS


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
    # The figures again, from the saved curves only.
    for name in ("loss.png", "summary.png"):
        (tmp_path / name).unlink()
    assert main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "loss.png").stat().st_size > 500
    assert (tmp_path / "summary.png").stat().st_size > 500
    assert json.loads((tmp_path / "experiment.json").read_text())["experiment"] == "demo"


def test_demo_rejects_bad_options(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--step-sizes", "1,-2"])
    assert "positive" in capsys.readouterr().err
    assert main(["demo", "--k", "0"]) == 2


def _flags() -> dict[str, set[str]]:
    """Every experiment's options, from the full parser."""
    parser = cli._parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    (names,) = [a for a in commands.choices["reproduce"]._actions if a.dest == "name"]
    return {
        name: {flag for action in sub._actions for flag in action.option_strings}
        for name, sub in names.choices.items()
    }


FLAGS = _flags()


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_experiment_has_its_own_options(name, capsys):
    mine = FLAGS[name]
    assert {"--quick", "--fresh", "--out"} <= mine
    with pytest.raises(SystemExit) as done:
        main(["reproduce", name, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for flag in mine:
        assert flag in text, flag
    others = set().union(*FLAGS.values()) - mine
    shown = set(text.replace(",", " ").replace("[", " ").replace("]", " ").split())
    assert not others & shown, others & shown
    # An option it does not take: exit 2 and one line naming it, nothing run.
    foreign = sorted(others)[0]
    assert main(["reproduce", name, foreign, "1"]) == 2
    err = capsys.readouterr().err
    assert foreign in err and len(err.strip().splitlines()) == 1
    assert main(["list"]) == 0
    assert any(line.split()[0] == name for line in capsys.readouterr().out.splitlines())


def test_old_flags_are_options_of_their_experiments():
    assert {"--seeds", "--n", "--m", "--k", "--step-size", "--tol", "--max-steps"} <= FLAGS[
        "ssvm-fig1"
    ]
    assert {"--shard", "--merge", "--no-progress"} <= FLAGS["ssvm-fig2"]
    assert {"--figures", "--step-sizes", "--flow-budget", "--descent-from"} <= FLAGS[
        "flow-vs-descent-phase"
    ]
    assert {"--max-steps", "--no-progress"} <= FLAGS["images"]
    assert {"--step-sizes", "--t1", "--n"} <= FLAGS["demo"]
    assert "--flow-budget" not in FLAGS["ssvm-fig1"] and "--seeds" not in FLAGS["images"]


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert importlib.metadata.version("flowdip") in capsys.readouterr().out


def test_bad_values_are_one_line_naming_option_and_value(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    cases = [
        (["demo", "--t1", "-5"], ["--t1", "-5"]),
        (["demo", "--t1", "nan"], ["--t1", "nan"]),
        (["demo", "--out", str(afile)], ["--out", str(afile)]),
        (["reproduce", "ssvm-fig1", "--scaling", "half"], ["--scaling", "half"]),
        (["reproduce", "images", "--operators", "radon"], ["operators", "radon"]),
        (["reproduce", "gd-overparam", "--m-fixed", "100"], ["m_fixed", "100"]),
    ]
    for argv, words in cases:
        try:
            code = main(argv)
        except SystemExit as done:
            code = done.code
        err = capsys.readouterr().err
        assert code == 2, argv
        assert len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
        for word in words:
            assert word in err, (argv, err)
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert main(["plot", str(tmp_path)]) == 2  # no experiment.json
    assert "experiment.json" in capsys.readouterr().err


def test_tiny_ssvm_fig1_plot_and_the_output_folder_rule(tmp_path, capsys):
    out = tmp_path / "fig1"
    argv = ["reproduce", "ssvm-fig1", "--quick", "--n", "5", "--k", "4,8", "--seeds", "2"]
    argv += ["--max-steps", "40", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    record = json.loads((out / "experiment.json").read_text())
    assert record["experiment"] == "ssvm-fig1" and record["complete"]
    assert record["options"]["k"] == [4, 8] and record["options"]["seeds"] == 2
    figure = out / "ssvm-fig1.png"
    figure.unlink()
    assert main(["plot", str(out)]) == 0
    assert figure.stat().st_size > 500 and str(figure) in capsys.readouterr().out
    # The same arguments again: continued (every chunk is there, nothing runs).
    assert main(argv) == 0
    # Other arguments: refused, one line naming what differs and --fresh.
    assert main([*argv, "--tol", "1e-6"]) == 2
    err = capsys.readouterr().err
    assert "tol" in err and "--fresh" in err and len(err.strip().splitlines()) == 1
    # Another experiment in the same folder: refused too.
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    assert "ssvm-fig1" in capsys.readouterr().err
    # --fresh deletes the folder and starts over.
    assert main([*argv, "--tol", "1e-6", "--fresh"]) == 0
    assert json.loads((out / "experiment.json").read_text())["options"]["tol"] == 1e-6
    # A folder flowdip did not write is never used, nor deleted.
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    assert main([*argv[:-1], str(other), "--fresh"]) == 2
    assert (other / "notes.txt").read_text() == "keep"


def test_merge_needs_out(tmp_path, capsys):
    assert main(["reproduce", "ssvm-fig2", "--merge", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err


def test_the_command_keeps_compiled_programs_in_a_user_cache_folder(tmp_path, monkeypatch):
    from flowdip import cli

    home = {"HOME": str(tmp_path)}
    monkeypatch.setattr(cli.pathlib.Path, "home", lambda: tmp_path)
    assert cli.cache_folder(home) == tmp_path / ".cache" / "flowdip" / "jax"
    assert cli.cache_folder({"XDG_CACHE_HOME": "/x"}) == cli.pathlib.Path("/x/flowdip/jax")
    assert cli.cache_folder({cli.CACHE_VARIABLE: str(tmp_path / "c")}) == tmp_path / "c"
    for off in ("off", "0", "", "false"):
        assert cli.cache_folder({cli.CACHE_VARIABLE: off}) is None
    # The console command (`entry`) points JAX at the folder; `main`, which tests call, does not.
    cache = tmp_path / "cache"
    code = (
        "import sys, jax; from flowdip import cli; sys.argv = ['flowdip', 'list']; "
        "r = cli.entry(); print(jax.config.jax_compilation_cache_dir); sys.exit(r)"
    )
    env = {**cli.os.environ, cli.CACHE_VARIABLE: str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(cache)
    import jax

    assert jax.config.jax_compilation_cache_dir != str(cache)
