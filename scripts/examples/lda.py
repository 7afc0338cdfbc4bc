"""Amortized latent Dirichlet allocation (Srivastava & Sutton 2017) written the way Pyro's
``examples/lda.py`` writes it, trained by ppl-vae as it stands:

    topic_weights ~ Gamma(1/K, 1),  topic_words_k ~ Dir(1/V),
    doc_topics_d ~ Dir(topic_weights),  word_topics_dw ~ Cat(doc_topics_d),  w_dw ~ Cat(topic_words[word_topics_dw]),

with the word–topic assignments summed out exactly (``infer={"enumerate": "parallel"}``: ``elbo``
trains Pyro's ``TraceEnum_ELBO``), the words plate nested inside the documents plate
(``max_plate_nesting=2``, read from the program), word indices as integers, global topic latents
outside the data plate, an MLP predictor registered in the guide and a point estimate of each
document's topics (``Delta``: the bound is of log p(x, doc_topics), not of log p(x), as
``evaluate`` says). The program keeps the example's signature and layout, ``model(data=None,
args=None, batch_size=None)`` with ``data`` [words per document, documents]: the data set holds
the documents as rows [N, W], and a per-batch function gives the program its ``data`` and ``args``
(``Pair(arguments=...)``). As in the example, each step sees every document and the guide's plate
subsamples ``batch_size`` of them itself (``pyro.plate("documents", N, batch_size)``), its
``batch_size`` a per-step input (``Pair(step_inputs=...)``): training only, so the test bound
covers every test document.

    python scripts/examples/lda.py --epochs 200
"""

from __future__ import annotations

import argparse
import functools
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints

from ppl_vae import Dataset, Pair, fit

NUM_TOPICS, NUM_WORDS, WORDS_PER_DOC, BATCH = 4, 30, 16, 16


def model(data=None, args=None, batch_size=None):
    with pyro.plate("topics", args.num_topics):
        topic_weights = pyro.sample("topic_weights", dist.Gamma(1.0 / args.num_topics, 1.0))
        topic_words = pyro.sample("topic_words", dist.Dirichlet(torch.ones(args.num_words) / args.num_words))
    with pyro.plate("documents", args.num_docs) as ind:
        if data is not None:
            assert data.shape == (args.num_words_per_doc, args.num_docs)
            data = data[:, ind]
        doc_topics = pyro.sample("doc_topics", dist.Dirichlet(topic_weights))
        with pyro.plate("words", args.num_words_per_doc):
            word_topics = pyro.sample("word_topics", dist.Categorical(doc_topics), infer={"enumerate": "parallel"})
            data = pyro.sample("doc_words", dist.Categorical(topic_words[word_topics]), obs=data)
    return topic_weights, topic_words, data


def make_predictor(args) -> nn.Sequential:
    sizes = [args.num_words, 32, args.num_topics]
    layers = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layer = nn.Linear(n_in, n_out)
        layer.weight.data.normal_(0, 0.001)
        layer.bias.data.normal_(0, 0.001)
        layers += [layer, nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Softmax(dim=-1))


def parametrized_guide(predictor, data, args, batch_size=None):
    topic_weights_posterior = pyro.param("topic_weights_posterior", lambda: torch.ones(args.num_topics),
                                         constraint=constraints.positive)
    topic_words_posterior = pyro.param("topic_words_posterior", lambda: torch.ones(args.num_topics, args.num_words),
                                       constraint=constraints.greater_than(0.5))
    with pyro.plate("topics", args.num_topics):
        pyro.sample("topic_weights", dist.Gamma(topic_weights_posterior, 1.0))
        pyro.sample("topic_words", dist.Dirichlet(topic_words_posterior))
    pyro.module("predictor", predictor)
    with pyro.plate("documents", args.num_docs, batch_size) as ind:
        data = data[:, ind]
        counts = torch.zeros(args.num_words, ind.size(0)).scatter_add(0, data, torch.ones(data.shape))
        doc_topics = predictor(counts.transpose(0, 1))
        pyro.sample("doc_topics", dist.Delta(doc_topics, event_dim=1))


def settings(num_docs: int) -> SimpleNamespace:
    return SimpleNamespace(num_topics=NUM_TOPICS, num_words=NUM_WORDS, num_words_per_doc=WORDS_PER_DOC,
                           num_docs=num_docs)


def batch_arguments(x):
    """The example's call, ``svi.step(data, args=args)``, for the documents x [N, W] of a batch."""
    return {"data": x.T, "args": settings(x.shape[0])}


def make_pair(data):
    guide = functools.partial(parametrized_guide, make_predictor(settings(0)))
    return Pair(model, guide, arguments=batch_arguments, step_inputs={"batch_size": lambda step: BATCH})


def documents(n: int, seed: int = 0) -> torch.Tensor:
    """n documents [n, W] of word indices drawn from the model itself, as the example makes its data."""
    pyro.set_rng_seed(seed)
    return model(args=settings(n))[2].T.contiguous()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="Pyro's amortized LDA on documents drawn from the model")
    p.add_argument("--epochs", type=int, default=200, help="steps: each sees every document, subsampled in the guide")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    data = Dataset.from_tensors(documents(200, args.seed), documents(50, args.seed + 1))
    history = fit(make_pair, data, "elbo", epochs=args.epochs, batch_size=200, lr=0.01, optimizer="ClippedAdam",
                  seed=args.seed, device="cpu")
    result = {k: history[-1][k] for k in ("train_bound", "test_bound")}
    print(result)
    return result


if __name__ == "__main__":
    main()
