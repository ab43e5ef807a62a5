"""metrics.csv (one row per logged step; eval columns filled at eval steps) and loss.png."""

from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = ("step", "tokens", "epoch", "lr", "train_loss", "tokens_per_s", "elapsed_s",
           "val_nats_per_token", "val_bits_per_byte", "val_se_bits_per_byte")


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        if new:
            w.writeheader()
        w.writerow(row)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _num(v: str):
    if v in ("", None):
        return None
    try:
        return int(v)
    except ValueError:
        return float(v)


def plot_losses(path: Path, rows: list[dict], title: str, train_label: str) -> None:
    """Training loss (nats/token) and held-out bits/byte against tokens seen."""
    import matplotlib.pyplot as plt

    fig = loss_figure(rows, title, train_label)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loss_figure(rows: list[dict], title: str, train_label: str):
    """The two panels of loss.png. A curve of a single point is drawn as a marker (a line
    through one point draws nothing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    train = [r for r in rows if r.get("train_loss") is not None]
    val = [r for r in rows if r.get("val_bits_per_byte") is not None]
    if train:
        ax1.plot([r["tokens"] for r in train], [r["train_loss"] for r in train], lw=1,
                 marker="o" if len(train) == 1 else None, ms=4)
    ax1.set(xlabel="training tokens", ylabel="nats/token", title=f"train: {train_label}")
    ax1.grid(alpha=0.3)
    if val:
        xs = [r["tokens"] for r in val]
        ys = [r["val_bits_per_byte"] for r in val]
        se = [r.get("val_se_bits_per_byte") or 0.0 for r in val]
        ax2.errorbar(xs, ys, yerr=se, marker="o", ms=3 if len(val) > 1 else 5, capsize=2)
        ax2.annotate(f"{ys[-1]:.3f}", (xs[-1], ys[-1]), textcoords="offset points",
                     xytext=(-10, 8))
    ax2.set(xlabel="training tokens", ylabel="bits/byte", title="held-out")
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
