import numpy as np
import torch

from sae_models.evals.examples import PAD_TOKEN, ExampleConfig, documents, gather_examples


def _rows(n_docs=30, length=15, group=37, seed=0):
    """Row groups of (doc_id, pos, token_id) + activations [n, 3]; latent 0 peaks at doc d with value d at
    position d % length; latent 1 is constant 1; latent 2 never fires. Groups cut documents in two."""
    doc = np.repeat(np.arange(n_docs), length)
    pos = np.tile(np.arange(1, length + 1), n_docs)
    acts = np.zeros((len(doc), 3), np.float32)
    acts[:, 1] = 1.0
    peak = np.arange(n_docs) * length + np.arange(n_docs) % length
    acts[peak, 0] = np.arange(n_docs)
    token = (doc * 100 + pos).astype(np.int32)
    for start in range(0, len(doc), group):
        sl = slice(start, start + group)
        yield {"doc_id": doc[sl], "pos": pos[sl], "token_id": token[sl]}, torch.from_numpy(acts[sl])


def test_documents_reassembles_documents_cut_by_row_groups():
    docs = list(documents(_rows()))
    assert [d[0] for d in docs] == list(range(30))
    assert all(len(d[1]) == 15 and list(d[1]) == list(range(1, 16)) for d in docs)


def test_top_windows_are_the_highest_peaks_centred_and_padded():
    cfg = ExampleConfig(n_top=3, n_importance=2, n_random=4, half_window=2)
    ex = gather_examples(torch.relu, _rows(), np.array([0, 1, 2]), cfg, docs_per_batch=7)
    assert sorted(ex.top.doc[0].tolist()) == [27, 28, 29]
    slot = ex.top.doc[0].tolist().index(29)  # peak of doc 29 at index 29 % 15 = 14, the last token
    assert ex.top.acts[0, slot].tolist() == [0, 0, 29, 0, 0]
    assert ex.top.tokens[0, slot].tolist() == [2913, 2914, 2915, PAD_TOKEN, PAD_TOKEN]
    assert ex.top.score[0, slot] == 29 and ex.top.pos[0, slot] == 15
    assert ex.top.filled(0).tolist()[0] == slot
    assert (ex.top.doc[2] == -1).all()  # a silent latent has no examples
    assert not set(ex.importance.doc[0].tolist()) & set(ex.top.doc[0].tolist())
    assert (ex.importance.doc[0] >= 0).all() and (ex.importance.acts[0].max(-1) > 0).all()
    assert len(set(ex.random.doc[1].tolist())) == 4 and (ex.random.doc[2] >= 0).all()


def test_importance_sampling_prefers_strong_windows():
    cfg = ExampleConfig(n_top=1, n_importance=5, n_random=1, half_window=1)
    picked = np.concatenate([gather_examples(torch.relu, _rows(n_docs=60), np.array([0]),
                                             cfg.model_copy(update={"seed": s})).importance.doc[0]
                             for s in range(20)])
    assert picked.mean() > 35  # weights ~ doc index: the mean of uniform picks would be ~29
