"""Code named by a run directory runs only with consent: a received run cannot run its author's file.

A run trained with ``--pair FILE.py:FACTORY`` records the file and its sha256. Commands on the run load
that file again only if this machine's user has run exactly that file (trained or checked with
``--pair``, which records it in the trust file) or says so with ``--trust-code``.
"""

import json
import os
import textwrap


from helpers import one_line_error, run_cli

PAIR = textwrap.dedent('''
    import pyro
    import pyro.distributions as dist
    from torch import nn


    class VAE(nn.Module):
        def __init__(self, x_dim):
            super().__init__()
            self.decoder, self.encoder = nn.Linear(2, x_dim), nn.Linear(x_dim, 4)

        def model(self, x):
            pyro.module("vae", self)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

        def guide(self, x):
            with pyro.plate("data", x.shape[0]):
                loc, log_scale = self.encoder(x).chunk(2, -1)
                pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


    def make_pair(data):
        vae = VAE(data.x_dim)
        return vae, vae
''')


def test_a_hostile_run_directory_cannot_run_its_code_without_consent(tmp_path, capsys):
    mine = tmp_path / "mine.py"
    mine.write_text(PAIR)
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--pair", f"{mine}:make_pair", "--out", run, "--epochs", "1", "--no-progress"],
                           capsys)
    assert code == 0, err
    code, out, err = run_cli(["evaluate", run, "-k", "5"], capsys)  # my own run: I ran this file
    assert code == 0, err

    # someone else's: a file in the run directory that would leave a mark if it ran
    marker = tmp_path / "ran"
    evil = run / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\n" + PAIR)
    config = json.loads((run / "config.json").read_text())
    config["pair"] = f"{evil}:make_pair"
    config["pair_sha256"] = __import__("hashlib").sha256(evil.read_bytes()).hexdigest()
    (run / "config.json").write_text(json.dumps(config))
    for argv in (["evaluate", run, "-k", "5"], ["report", run], ["train", "--resume", run, "--epochs", "2"]):
        line = one_line_error(*run_cli(argv, capsys)[::2])
        assert f"names the pair {evil}:make_pair" in line and "--trust-code" in line, line
        assert not marker.exists()  # nothing ran
    code, _, err = run_cli(["evaluate", run, "-k", "5", "--trust-code"], capsys)
    assert marker.exists()  # consent given: it ran (and the checkpoint still fits the same pair)
    assert code == 0, err


def test_the_trust_file_is_this_tests_own(tmp_path):
    assert os.environ["PPL_VAE_TRUST_FILE"].startswith(str(tmp_path.parent))  # this session's, never the user's
