"""One judge for every evaluation: explain, detect, simulate and rate, on any backend, through the cache.

Requests go out in batches, ``backend.max_concurrency`` at a time; each finished call is cached at once, so
when a call finally fails (the backend gave up after its retries) everything finished before it is kept and
a rerun resumes from there.
"""

import functools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from sae_models.judges import prompts
from sae_models.judges.cache import JudgeCache, request_key
from sae_models.judges.config import JudgeConfig
from sae_models.judges.protocol import Backend, Completion, JudgeError, JudgeRequest, Window
from sae_models.progress import Progress

GARBAGE_MIN_ANSWERS = 20  # a batch this large with most answers unparseable stops the stage
GARBAGE_MAX_SHARE = 0.5


@dataclass
class JudgeStats:
    """New calls, answers served from the cache, unparseable answers, and the tokens the new calls spent. A
    summary row keeps a copy as its judge-usage columns (``USAGE_COLUMNS``)."""

    calls: int = 0
    cached: int = 0
    unparseable: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def snapshot(self) -> "JudgeStats":
        """The counts so far, apart from the judge's running ones."""
        return replace(self)


USAGE_PREFIX = "judge_"
USAGE_COLUMNS = tuple(USAGE_PREFIX + f.name for f in fields(JudgeStats))  # judge_calls, judge_cached, ...


def usage_field():
    """A summary row's judge-usage field: the judge's ``JudgeStats``, as the columns ``USAGE_COLUMNS``."""
    return field(metadata={"prefix": USAGE_PREFIX})


@dataclass(frozen=True)
class Prices:
    """US dollars per million prompt / completion tokens (0 for local backends)."""

    prompt: float = 0.0
    completion: float = 0.0


class Judge:
    def __init__(self, backend: Backend, cache: JudgeCache | None = None, prices: Prices = Prices(),
                 progress: Callable[[str], None] | None = None):
        self.backend, self.cache, self.prices = backend, cache, prices
        self.stats = JudgeStats()
        self.stored = 0  # new answers written to the cache (every new call but the unparseable ones)
        self.progress = Progress(progress)

    @property
    def name(self) -> str:
        return f"{self.backend.name}:{self.backend.model}"

    # --- the four tasks ------------------------------------------------------------------------------

    def explain(self, window_sets: Sequence[Sequence[Window]], thresholds: Sequence[float]) -> list[str | None]:
        requests = [prompts.explain_request(w, t) for w, t in zip(window_sets, thresholds, strict=True)]
        return self._answered("explain", requests, [prompts.parse_explanation] * len(requests))

    def detect(self, explanations: Sequence[str], window_sets: Sequence[Sequence[Window]]) -> list[list[bool] | None]:
        requests = [prompts.detect_request(e, w) for e, w in zip(explanations, window_sets, strict=True)]
        return self._answered("detect", requests,
                              [functools.partial(prompts.parse_detection, n_windows=len(w)) for w in window_sets])

    def simulate(self, explanations: Sequence[str],
                 window_sets: Sequence[Sequence[Window]]) -> list[list[list[float]] | None]:
        requests = [prompts.simulate_request(e, w) for e, w in zip(explanations, window_sets, strict=True)]
        return self._answered("simulate", requests, [
            functools.partial(prompts.parse_simulation, lengths=[len(x.tokens) for x in w]) for w in window_sets])

    def rate(self, kind: str, concepts: Sequence[str], instructions: Sequence[str],
             texts: Sequence[str]) -> list[int | None]:
        requests = [prompts.rate_request(kind, c, i, t) for c, i, t in zip(concepts, instructions, texts, strict=True)]
        return self._answered(f"rate {kind}", requests, [prompts.parse_rating] * len(requests))

    # --- calls ---------------------------------------------------------------------------------------

    def _answered(self, task: str, requests: Sequence[JudgeRequest], parses: Sequence[Callable]) -> list:
        """Each request's parsed answer (None where the answer did not follow the format), from the cache where
        possible, else from the backend. Only parsed answers are cached: an unparseable one is asked again next
        time, so a judge fixed after answering garbage is not served its garbage back. Most of a batch large
        enough to tell unparseable stops the stage: such a judge (a wrong model, an endpoint answering something
        else) would otherwise score every latent 0, in silence. A request repeated within the batch (the same
        prompt, e.g. two identical answers rated for fluency) is asked once, and its repeats count as cached."""
        keys = [request_key(self.backend.name, self.backend.model, r) for r in requests]
        values: list = [None] * len(requests)
        texts: list[str] = [""] * len(requests)
        missing, first = [], {}
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                texts[i], values[i] = hit.text, parses[i](hit.text)
            elif key not in first:
                first[key] = i
                missing.append(i)
        self.stats.cached += len(requests) - len(missing)
        try:
            self._call(missing, requests, keys, parses, values, texts)
        finally:
            if self.cache is not None:
                self.cache.flush()
        for i, key in enumerate(keys):
            if key in first and first[key] != i:
                texts[i] = texts[first[key]]
                values[i] = parses[i](texts[i]) if values[first[key]] is not None else None
        self.stats.unparseable += sum(v is None for v in values)
        bad = [texts[i] for i in missing if values[i] is None]  # cached answers always parsed: judge the new
        if len(missing) >= GARBAGE_MIN_ANSWERS and len(bad) > GARBAGE_MAX_SHARE * len(missing):
            raise JudgeError(f"judge {self.name}: {len(bad)} of {len(missing)} new {task} answers are not in the "
                             f"format the task asks for (the first: {bad[0][:80]!r}); check [judge] model and "
                             "endpoint")
        return values

    def _call(self, missing: list[int], requests, keys, parses, values, texts) -> None:
        lock, done_count = threading.Lock(), [0]

        def one(i: int) -> None:
            completion = self.backend.complete(requests[i])
            value = parses[i](completion.text)
            with lock:
                self._record(keys[i], requests[i], completion, cache=value is not None)
                texts[i], values[i] = completion.text, value
                done_count[0] += 1
                self._report(done_count[0], len(missing), requests[i].task)

        if self.backend.max_concurrency <= 1:
            for i in missing:
                one(i)
            return
        with ThreadPoolExecutor(self.backend.max_concurrency) as pool:
            futures = [pool.submit(one, i) for i in missing]
            finished, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in finished:
                future.result()  # raises the first failure

    def _record(self, key: str, request: JudgeRequest, completion: Completion, cache: bool) -> None:
        if cache and self.cache is not None:
            self.cache.put(key, request.task, completion)
            self.stored += 1
        s = self.stats
        s.calls += 1
        s.prompt_tokens += completion.prompt_tokens
        s.completion_tokens += completion.completion_tokens
        s.cost_usd = (s.prompt_tokens * self.prices.prompt + s.completion_tokens * self.prices.completion) / 1e6

    def _report(self, n: int, total: int, task: str) -> None:
        self.progress(f"judge {self.name}: {task} {n}/{total} new calls ({self.stats.cached} cached so far)")


def build_judge(cfg: JudgeConfig, cache_dir: str | Path | None, device: str = "cpu",
                progress: Callable[[str], None] | None = None, cache_fs=None) -> Judge:
    """The configured judge, answering from (and filling) the call cache under ``cache_dir`` (on the fsspec
    filesystem ``cache_fs``, the local disk by default)."""
    if cfg.backend == "toyworld":
        from sae_models.judges.toyworld import ToyworldBackend

        backend = ToyworldBackend()
    elif cfg.backend == "openai":
        from sae_models.judges.openai_compat import OpenAICompatibleBackend

        backend = OpenAICompatibleBackend(cfg.base_url, cfg.model, cfg.api_key_env, cfg.max_concurrency,
                                          cfg.max_retries, cfg.timeout_s)
    else:
        from sae_models.judges.local import TransformersChatBackend

        backend = TransformersChatBackend(cfg.model, device=device)
    cache = JudgeCache(cache_dir, backend.name, backend.model, fs=cache_fs) if cache_dir is not None else None
    return Judge(backend, cache, Prices(cfg.price_prompt_per_m, cfg.price_completion_per_m), progress=progress)
