"""The ELBO check: on enumerable toys the Monte-Carlo estimate converges to the exact NELBO,
which upper-bounds the exact NLL of a proper joint built from the same conditionals."""

from __future__ import annotations

import pytest

from dlm.diffusion.check_elbo import check_elbo


@pytest.mark.parametrize("vocab,length,seed", [(3, 4, 0), (4, 3, 1), (2, 5, 2)])
def test_monte_carlo_elbo_converges_to_the_exact_bound(vocab, length, seed):
    r = check_elbo(vocab=vocab, length=length, seed=seed, ks=(8, 512))
    assert r.sequences == vocab ** length
    assert r.total_probability == pytest.approx(1.0, abs=1e-6)  # a proper joint
    assert r.nelbo >= r.nll  # the bound
    (_, e8, se8), (_, e512, se512) = r.estimates
    assert se512 < se8  # more draws, tighter
    assert abs(e512 - r.nelbo) < 4 * se512  # unbiased: the exact value within 4 s.e.


def test_cli_prints_the_check(capsys):
    from dlm.cli import main

    assert main(["eval", "--check-elbo"]) == 0
    out = capsys.readouterr().out
    assert "exact negative ELBO" in out and ">= NLL: yes" in out and "K =   512" in out
    assert main(["eval"]) == 2
    assert "--check-elbo" in capsys.readouterr().err
