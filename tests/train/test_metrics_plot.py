"""loss.png: a run with a single logged point still shows it (read off the saved figure's
artists, not its pixels)."""

from __future__ import annotations

from dlm.train.metrics import plot_losses


def has_marker(line) -> bool:
    return line.get_marker() not in ("None", None, "", " ") and line.get_markersize() > 0


def test_a_single_training_point_is_drawn_with_a_marker(tmp_path, saved):
    rows = [{"step": 0, "tokens": 0, "val_bits_per_byte": 3.0, "val_se_bits_per_byte": 0.02},
            {"step": 5, "tokens": 2560, "train_loss": 2.1}]
    plot_losses(tmp_path / "loss.png", rows, "title", "mdlm")
    assert (tmp_path / "loss.png").stat().st_size > 1000
    train_ax, val_ax = saved[0].axes
    (line,) = train_ax.get_lines()
    assert list(line.get_xdata()) == [2560] and list(line.get_ydata()) == [2.1]
    assert has_marker(line)  # a line through one point alone draws nothing
    val = val_ax.containers[0].lines[0]  # the error bar's data line
    assert list(val.get_xdata()) == [0] and has_marker(val)


def test_a_longer_curve_stays_a_plain_line(tmp_path, saved):
    rows = [{"step": s, "tokens": 256 * s, "train_loss": 3.0 - 0.1 * s} for s in range(1, 6)]
    plot_losses(tmp_path / "loss.png", rows, "title", "ar")
    (line,) = saved[0].axes[0].get_lines()
    assert len(line.get_xdata()) == 5 and not has_marker(line)
