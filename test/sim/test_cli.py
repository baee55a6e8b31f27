"""`arvla sim` writes a frame, a demo GIF and collected episodes."""

from __future__ import annotations

import imageio.v3 as iio

from arvla.cli import main as arvla_main
from arvla_sim.collect import load_episode


def test_frame_demo_and_collect(tmp_path, capsys):
    assert arvla_main(["sim", "frame", "--task", "push", "--size", "64", "--out", str(tmp_path / "f.png")]) == 0
    assert iio.imread(tmp_path / "f.png").shape == (64, 64, 3)
    gif = tmp_path / "demo.gif"
    assert arvla_main(["sim", "demo", "--task", "cued_reach", "--seed", "1", "--size", "64",
                       "--out", str(gif)]) == 0
    assert "SUCCESS" in capsys.readouterr().out
    assert iio.imread(gif).shape[0] > 20          # frames
    out = tmp_path / "eps"
    assert arvla_main(["sim", "collect", "--task", "cued_reach", "--episodes", "2", "--size", "32",
                       "--frame-every", "5", "--out", str(out)]) == 0
    files = sorted(out.glob("*.npz"))
    assert [f.name for f in files] == ["cued_reach_000000.npz", "cued_reach_000001.npz"]
    ep = load_episode(files[1])
    assert ep["seed"] == 1 and ep["images"].shape[1:] == (32, 32, 3)
