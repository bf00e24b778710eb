"""Autointerp speed: example gathering (latents/s, peak memory) and judge scoring against a loopback
`transformers serve` endpoint with concurrency off and on, each against a baseline measured in the same run.

- Gathering: one streaming pass over an activation lake partition for N latents of a TopK SAE, against a bare
  encode pass over the same rows (the floor any gatherer pays). Each runs in a fresh subprocess so its peak
  RSS is its own.
- Scoring: SAEBench detection (explain + detect, two calls per latent) of N latents through the
  OpenAI-compatible backend, ``max_concurrency`` 1 vs 8, against the same windows; the judge cache is off so
  every call goes to the server. The served model is a toy LM: its answers are nonsense, the traffic is real.

    python bench/autointerp.py --lake lake --model toy-gemma2 --latents 1000
"""

import argparse
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


def phase(kind: str, lake: Path, model: str, latents: int, d_sae: int) -> dict:
    """One measurement, run in its own process."""
    from sae_models.activation_store import ActivationReader
    from sae_models.evals.examples import gather_examples

    reader = ActivationReader(lake / "activations" / f"model={model}")
    sae = _sae(reader.d_model, d_sae)
    chosen = np.sort(np.random.default_rng(0).choice(d_sae, size=latents, replace=False))
    start = time.perf_counter()
    with torch.no_grad():
        if kind == "encode":
            for _, acts in reader.rows(()):
                sae.encode(acts)[:, chosen].amax(0)
        else:
            gather_examples(sae.encode, reader.rows(("doc_id", "pos", "token_id")), chosen)
    return {"seconds": time.perf_counter() - start, "tokens": reader.n_rows, "peak_rss_mb": _peak_rss_mb()}


def _run_phase(kind: str, args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", kind, "--lake", str(args.lake), "--model", args.model,
                          "--latents", str(args.latents), "--d-sae", str(args.d_sae)],
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
    parser.add_argument("--phase", choices=["encode", "gather"])
    parser.add_argument("--skip-scoring", action="store_true")
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.lake, args.model, args.latents, args.d_sae)))
        return
    encode, gather = _run_phase("encode", args), _run_phase("gather", args)
    print(f"example gathering, {args.latents} latents of a {args.d_sae}-latent TopK SAE over {gather['tokens']:,} "
          f"tokens ({args.model}):")
    print(f"  bare encode pass  {encode['seconds']:7.2f} s   peak RSS {encode['peak_rss_mb']:6.0f} MB")
    print(f"  gather examples   {gather['seconds']:7.2f} s   peak RSS {gather['peak_rss_mb']:6.0f} MB   "
          f"{args.latents / gather['seconds']:,.0f} latents/s   {gather['seconds'] / encode['seconds']:.2f}x encode")
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
