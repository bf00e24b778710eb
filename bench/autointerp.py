"""Autointerp speed: example gathering (latents/s, peak memory) and judge scoring against a loopback
`transformers serve` endpoint with concurrency off and on, each against a baseline measured in the same run.

- Gathering: one streaming pass over an activation lake partition for N latents of a TopK SAE
  (``gather_examples``), against a bare encode pass over the same rows with the gatherer's own batching: the
  same document split (``documents``), the same ``docs_per_batch`` documents per batch (the gatherer's
  default, 64, unless ``--docs-per-batch`` says otherwise; both sides get the same value), and, as the
  gatherer does, one ``encode`` call per batch of documents followed by the selection of the N latents. That
  pass is the floor a gatherer with this batching pays, so the ratio is the cost of the reservoirs alone. For
  scale, a third pass encodes whole storage row groups (one call per row group, thousands of rows), shown
  without a ratio. Each runs in a fresh subprocess so its peak RSS is its own. ``--threads 1`` pins every
  phase to one torch thread, which makes the comparison stable on a CPU shared with other work.
- Scoring: SAEBench detection (explain + detect, two calls per latent) of N latents through the
  OpenAI-compatible backend, ``max_concurrency`` 1 vs 8, against the same windows; the judge cache is off so
  every call goes to the server. The served model is a toy LM: its answers are nonsense, the traffic is real.

    python bench/autointerp.py --lake lake --model toy-gemma2 --latents 1000
    python bench/autointerp.py --skip-scoring --threads 1      # gathering only, on a shared CPU
"""

import argparse
import inspect
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sae(d_model: int, d_sae: int):
    from sae_models.sae import SAEConfig, build_sae

    torch.manual_seed(0)
    return build_sae(SAEConfig(architecture="topk", d_in=d_model, d_sae=d_sae, k=32))


def _default_docs_per_batch() -> int:
    from sae_models.evals.examples import gather_examples

    return inspect.signature(gather_examples).parameters["docs_per_batch"].default


def encode_like_gatherer(encode, rows, latents: torch.Tensor, docs_per_batch: int) -> None:
    """The encode work of ``gather_examples`` and nothing else: documents from the same rows, grouped
    ``docs_per_batch`` at a time, each batch's activations encoded in one call and the chosen latents
    taken (as ``_offer_batch`` does), no reservoirs."""
    from sae_models.evals.examples import documents

    def encode_batch(batch: list) -> None:
        encode(torch.cat([acts for _, _, _, acts in batch]))[:, latents]

    batch: list = []
    for doc in documents(rows):
        batch.append(doc)
        if len(batch) == docs_per_batch:
            encode_batch(batch)
            batch = []
    if batch:
        encode_batch(batch)


def phase(kind: str, lake: Path, model: str, latents: int, d_sae: int, docs_per_batch: int,
          threads: int | None) -> dict:
    """One measurement, run in its own process."""
    if threads:
        torch.set_num_threads(threads)
    from sae_models.activation_store import ActivationReader
    from sae_models.evals.examples import gather_examples

    reader = ActivationReader(lake / "activations" / f"model={model}")
    sae = _sae(reader.d_model, d_sae)
    chosen = np.sort(np.random.default_rng(0).choice(d_sae, size=latents, replace=False))
    lat = torch.as_tensor(chosen, dtype=torch.long)
    keys = ("doc_id", "pos", "token_id")
    start = time.perf_counter()
    with torch.no_grad():
        if kind == "encode":
            encode_like_gatherer(sae.encode, reader.rows(keys), lat, docs_per_batch)
        elif kind == "encode-row-groups":
            for _, acts in reader.rows(()):
                sae.encode(acts)[:, lat]
        else:
            gather_examples(sae.encode, reader.rows(keys), chosen, docs_per_batch=docs_per_batch)
    return {"seconds": time.perf_counter() - start, "tokens": reader.n_rows, "peak_rss_mb": _peak_rss_mb()}


def _run_phase(kind: str, args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", kind, "--lake", str(args.lake), "--model", args.model,
                          "--latents", str(args.latents), "--d-sae", str(args.d_sae),
                          "--docs-per-batch", str(args.docs_per_batch)]
                         + (["--threads", str(args.threads)] if args.threads else []),
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _serve(model_dir: Path):
    cli = shutil.which("transformers", path=str(Path(sys.executable).parent))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([cli, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("transformers serve did not start")


def scoring(args) -> list[dict]:
    from sae_models.activation_store import ActivationReader
    from sae_models.evals.autointerp import AutointerpConfig, TokenText, plan_latent, too_few_activations
    from sae_models.evals.examples import ExampleConfig, from_arrow, gather_examples, to_arrow
    from sae_models.judges import Judge
    from sae_models.judges.openai_compat import OpenAICompatibleBackend
    from sae_models.lm import load_tokenizer

    model_dir = args.lake / "models" / f"model={args.model}"
    reader = ActivationReader(args.lake / "activations" / f"model={args.model}")
    sae = _sae(reader.d_model, args.d_sae)
    with torch.no_grad():
        ex = gather_examples(sae.encode, reader.rows(("doc_id", "pos", "token_id")), np.arange(args.d_sae))
    cfg = AutointerpConfig()
    ex = from_arrow(to_arrow(ex, keep=~too_few_activations(ex, cfg)), ExampleConfig())
    n = min(args.latents, len(ex.latents))
    text = TokenText(load_tokenizer(str(model_dir)))
    plans = [plan_latent(ex, i, text, cfg) for i in range(n)]
    proc, url = _serve(model_dir)
    rows = []
    try:
        for concurrency in (1, 8):
            judge = Judge(OpenAICompatibleBackend(url, str(model_dir), max_concurrency=concurrency, timeout_s=120))
            start = time.perf_counter()
            explanations = judge.explain([p.explain for p in plans], [p.tau for p in plans])
            judge.detect([e or "nothing" for e in explanations], [p.detect for p in plans])
            rows.append({"concurrency": concurrency, "latents": n, "calls": judge.stats.calls,
                         "seconds": time.perf_counter() - start})
    finally:
        proc.terminate()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, default=Path("lake"))
    parser.add_argument("--model", default="toy-gemma2")
    parser.add_argument("--latents", type=int, default=1000)
    parser.add_argument("--d-sae", type=int, default=4096)
    parser.add_argument("--docs-per-batch", type=int, default=None,
                        help="documents per batch, for the gatherer and its baseline alike (default: the gatherer's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads in every gathering phase (default: torch's own)")
    parser.add_argument("--phase", choices=["encode", "encode-row-groups", "gather"])
    parser.add_argument("--skip-scoring", action="store_true")
    args = parser.parse_args()
    if args.docs_per_batch is None:
        args.docs_per_batch = _default_docs_per_batch()
    if args.phase:
        print(json.dumps(phase(args.phase, args.lake, args.model, args.latents, args.d_sae, args.docs_per_batch,
                               args.threads)))
        return
    encode, gather = _run_phase("encode", args), _run_phase("gather", args)
    groups = _run_phase("encode-row-groups", args)
    print(f"example gathering, {args.latents} latents of a {args.d_sae}-latent TopK SAE over {gather['tokens']:,} "
          f"tokens ({args.model}), {args.docs_per_batch} documents per batch, "
          f"{args.threads or torch.get_num_threads()} torch thread(s):")
    print(f"  bare encode pass, gatherer's batching   {encode['seconds']:7.2f} s   peak RSS "
          f"{encode['peak_rss_mb']:6.0f} MB   (one encode call per batch)")
    print(f"  gather examples                         {gather['seconds']:7.2f} s   peak RSS "
          f"{gather['peak_rss_mb']:6.0f} MB   {args.latents / gather['seconds']:,.1f} latents/s   "
          f"{gather['seconds'] / encode['seconds']:.2f}x encode")
    print(f"  for scale: encode per storage row group {groups['seconds']:7.2f} s   peak RSS "
          f"{groups['peak_rss_mb']:6.0f} MB   (not the gatherer's batching; no ratio)")
    if args.skip_scoring:
        return
    rows = scoring(args)
    base = rows[0]["seconds"]
    print("SAEBench detection scoring (explain + detect) against loopback `transformers serve`:")
    for r in rows:
        print(f"  concurrency {r['concurrency']}: {r['latents']} latents, {r['calls']} calls in {r['seconds']:7.1f} s "
              f"({r['calls'] / r['seconds']:.1f} calls/s, {base / r['seconds']:.2f}x concurrency 1)")


if __name__ == "__main__":
    main()
