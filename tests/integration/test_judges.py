"""The judge protocol: prompts and parsers, the call cache, the toy-world reader, and the OpenAI-compatible and
local transformers backends against real models (``transformers serve`` on loopback)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from sae_models.judges import Completion, Judge, JudgeCache, JudgeError, JudgeRequest, Prices, Window, prompts
from sae_models.judges.openai_compat import OpenAICompatibleBackend
from sae_models.judges.toyworld import ToyworldBackend
from tests.judge_endpoint import QuietHandler, reply, serving


def _win(text: str, acts: list[float] | None = None) -> Window:
    tokens = tuple(" " + w for w in text.split())
    return Window(tokens, tuple(acts) if acts is not None else ())


# --- prompts and parsers -------------------------------------------------------------------------------


def test_marked_runs_and_parsers():
    w = _win("the puppy chased a kitten .", [0, 2, 3, 0, 5, 0])
    assert prompts.render(w, threshold=1) == "the <<puppy chased>> a <<kitten>> ."
    assert prompts.parse_detection("2, 5", 5) == [False, True, False, False, True]
    assert prompts.parse_detection("None.", 3) == [False, False, False]
    assert prompts.parse_detection("windows 2 and 5", 5) is None
    assert prompts.parse_detection("2, 9", 5) is None
    assert prompts.parse_simulation("1: 0 10 5\n2: 0", [3, 1]) == [[0, 1, 0.5], [0]]
    assert prompts.parse_simulation("1: 0 10\n2: 0", [3, 1]) is None  # wrong token count
    assert prompts.parse_rating("Fluent enough. Rating: [[2]]") == 2
    assert prompts.parse_rating("Rating: [[7]]") is None
    assert prompts.parse_explanation("Explanation: the words 'a' and '.'.") == "the words 'a' and '.'"
    assert prompts.parse_explanation("   ") is None


def test_detection_and_simulation_requests_carry_no_activations():
    windows = [_win("the cow", [0, 3]), _win("a song", [0, 0])]
    for request in (prompts.detect_request("farming", windows), prompts.simulate_request("farming", windows)):
        assert set(request.payload) == {"explanation", "windows"}
        assert request.payload["windows"] == [[" the", " cow"], [" a", " song"]]
        assert "3" not in json.dumps(request.messages[1]["content"])


# --- the cache -----------------------------------------------------------------------------------------


class Counting:
    """A backend that echoes the task and counts its calls; fails from call ``fail_at`` on."""

    name, model, max_concurrency = "counting", "echo/v1", 2

    def __init__(self, fail_at: int | None = None, answer: str = "Rating: [[1]]"):
        self.calls, self.fail_at, self.answer, self._lock = 0, fail_at, answer, threading.Lock()

    def complete(self, request):
        with self._lock:
            self.calls += 1
            if self.fail_at is not None and self.calls >= self.fail_at:
                raise JudgeError("counting: endpoint down")
        return Completion(self.answer, prompt_tokens=10, completion_tokens=3)


def _rate(judge: Judge, n: int) -> list:
    return judge.rate("fluency", [""] * n, [""] * n, [f"text {i}" for i in range(n)])


def test_a_rerun_makes_zero_new_calls_and_a_failure_keeps_finished_calls(tmp_path):
    backend = Counting()
    judge = Judge(backend, JudgeCache(tmp_path, backend.name, backend.model), prices=Prices(prompt=1.0, completion=2.0))
    assert _rate(judge, 20) == [1] * 20
    assert backend.calls == 20 and judge.stats.prompt_tokens == 200 and judge.stats.cost_usd == pytest.approx(320e-6)

    again = Counting()
    rerun = Judge(again, JudgeCache(tmp_path, again.name, again.model))
    assert _rate(rerun, 20) == [1] * 20
    assert again.calls == 0 and rerun.stats.cached == 20

    failing = Counting(fail_at=6)
    partial = Judge(failing, JudgeCache(tmp_path, failing.name, failing.model))
    with pytest.raises(JudgeError, match="endpoint down"):
        _rate(partial, 40)  # 20 cached, then the 6th new call fails
    finished = partial.stats.calls
    assert finished >= 4
    resumed_backend = Counting()
    resumed = Judge(resumed_backend, JudgeCache(tmp_path, resumed_backend.name, resumed_backend.model))
    _rate(resumed, 40)
    assert resumed_backend.calls == 20 - finished  # only what had not finished before
    assert list(tmp_path.rglob(".*.tmp")) == []


def test_a_request_repeated_within_a_batch_is_asked_once(tmp_path):
    """Identical prompts in one batch (identical answers rated for fluency): one call, the same answer for each,
    the repeats counted as cached and the cache holding one row per prompt."""
    backend = Counting()
    judge = Judge(backend, JudgeCache(tmp_path, backend.name, backend.model))
    texts = ["a b", "c d", "a b", "a b"]
    assert judge.rate("fluency", [""] * 4, [""] * 4, texts) == [1, 1, 1, 1]
    assert backend.calls == 2 and judge.stats.calls == 2 and judge.stats.cached == 2
    import pyarrow.parquet as pq

    assert sum(pq.read_metadata(f).num_rows for f in tmp_path.rglob("*.parquet")) == 2


def test_a_judge_answering_garbage_stops_the_stage_with_one_line_and_caches_none_of_it(tmp_path):
    """A few unparseable answers count as 0; most of a batch of 20 or more is a judge that does not follow the
    format, which would score everything 0 in silence. Garbage is never cached, so a fixed judge is asked anew."""
    garbage = Counting(answer="I think it is about cows!")
    judge = Judge(garbage, JudgeCache(tmp_path, garbage.name, garbage.model))
    assert _rate(judge, 19) == [None] * 19 and judge.stats.unparseable == 19  # too few to tell
    with pytest.raises(JudgeError, match=r"judge counting:echo/v1: 25 of 25 new rate fluency answers are not in "
                                         r"the format the task asks for \(the first: 'I think it is about cows!'\)"):
        _rate(judge, 25)
    assert garbage.calls == 19 + 25 and list(tmp_path.rglob("*.parquet")) == []
    fixed = Counting(answer="Rating: [[2]]")
    assert _rate(Judge(fixed, JudgeCache(tmp_path, fixed.name, fixed.model)), 25) == [2] * 25
    assert fixed.calls == 25


def test_many_segments_are_merged_into_one_and_every_call_survives(tmp_path):
    backend = Counting()
    cache = JudgeCache(tmp_path, backend.name, backend.model, flush_every=1)
    _rate(Judge(backend, cache), 10)
    cache.flush()
    assert len(list(Path(cache.directory).glob("part-*.parquet"))) == 10
    merged = JudgeCache(tmp_path, backend.name, backend.model, compact_at=4)
    assert len(list(Path(cache.directory).glob("part-*.parquet"))) == 1 and len(merged) == 10
    again = Counting()
    _rate(Judge(again, JudgeCache(tmp_path, again.name, again.model)), 10)
    assert again.calls == 0


def test_merged_segments_of_two_compactions_at_once_leave_each_call_once_at_the_next_merge(tmp_path):
    """Two processes compacting the same segments at once each write a merged segment holding all their rows; the
    next compaction keeps one row per call, so the duplicates do not compound merge after merge."""
    import shutil

    import pyarrow.parquet as pq

    backend = Counting()
    cache = JudgeCache(tmp_path, backend.name, backend.model, flush_every=1)
    _rate(Judge(backend, cache), 6)
    cache.flush()
    merged = JudgeCache(tmp_path, backend.name, backend.model, compact_at=2).directory  # one segment of 6 rows
    (segment,) = Path(merged).glob("part-*.parquet")
    for copy in range(3):  # the same merged rows written by other processes' compactions
        shutil.copy(segment, Path(merged) / f"part-raced-{copy}.parquet")
    JudgeCache(tmp_path, backend.name, backend.model, compact_at=2)
    (final,) = Path(merged).glob("part-*.parquet")
    table = pq.read_table(final)
    assert table.num_rows == 6 and len(set(table.column("key").to_pylist())) == 6


def test_a_compaction_that_finds_a_segment_merged_away_by_another_process_leaves_the_rest_as_they_are(tmp_path):
    from sae_models.judges import cache as cache_module

    backend = Counting()
    cache = JudgeCache(tmp_path, backend.name, backend.model, flush_every=1)
    _rate(Judge(backend, cache), 6)
    cache.flush()
    segments = sorted(str(p) for p in Path(cache.directory).glob("part-*.parquet"))
    gone = f"{cache.directory}/part-merged-by-another-process.parquet"
    cache._compact(segments[:3] + [gone] + segments[3:])
    assert sorted(str(p) for p in Path(cache.directory).glob("part-*.parquet")) == segments and len(cache) == 6
    cache_module._READ.clear()  # read from the disk, as another process would
    again = Counting()
    _rate(Judge(again, JudgeCache(tmp_path, again.name, again.model)), 6)
    assert again.calls == 0


def test_a_cache_opened_again_in_the_same_process_reads_only_new_segments_and_forgets_a_wiped_one(
        tmp_path, monkeypatch):
    import shutil

    import pyarrow.parquet as pq

    backend = Counting()
    first = JudgeCache(tmp_path, backend.name, backend.model, flush_every=5)
    _rate(Judge(backend, first), 10)
    first.flush()
    reads = []
    real_read = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda path, *a, **k: reads.append(path) or real_read(path, *a, **k))
    again = Counting()
    _rate(Judge(again, JudgeCache(tmp_path, again.name, again.model)), 10)
    assert again.calls == 0 and reads == []  # answered from what this process read and wrote before
    shutil.rmtree(Path(first.directory))
    wiped = Counting()
    _rate(Judge(wiped, JudgeCache(tmp_path, wiped.name, wiped.model)), 10)
    assert wiped.calls == 10  # nothing on disk: not answered from memory


# --- the toy-world reader ------------------------------------------------------------------------------


def test_toyworld_reader_names_a_topic_and_detects_by_the_explanation_alone():
    judge = Judge(ToyworldBackend())
    farming = [_win("the farmer plowed a muddy field .", [0, 4, 3, 0, 2, 5, 0]),
               _win("a cow near the barn .", [0, 6, 0, 0, 3, 0])]
    (explanation,) = judge.explain([farming], [0.05])
    assert explanation.startswith("concept farming")
    windows = [_win("that tractor won"), _win("the kind teacher sang"), _win("a wheat field")]
    assert judge.detect([explanation], [windows]) == [[True, False, True]]
    (simulated,) = judge.simulate([explanation], [windows[:1]])
    assert simulated == [[0.0, 1.0, 0.0]]
    (words,) = judge.explain([[_win("alice gave , bob", [0, 0, 3, 0])] * 2], [0.05])
    assert words == "tokens ',' after verbs"
    assert judge.rate("concept", [explanation], [""], ["the cow ate wheat"]) == [2]
    assert judge.rate("instruct", [""], ["tell me about music"], ["the cow ate wheat"]) == [0]


def test_toyworld_reader_says_where_function_tokens_are_marked():
    """'the' and '.' are in nearly every fragment: named alone they would pick every window, so the reader
    states the context that covers the marked ones, and detects by token and context together."""
    judge = Judge(ToyworldBackend())
    farming = [_win("the farmer plowed the field .", [1, 0, 0, 2, 0, 0]),
               _win("a cow near the barn .", [0, 0, 0, 3, 0, 0])]
    (explanation,) = judge.explain([farming], [0.05])
    assert explanation == "tokens 'the' in text about farming"
    windows = [_win("the chef fried the soup"), _win("the tractor plowed a field"), _win("a cow ate")]
    assert judge.detect([explanation], [windows]) == [[False, True, False]]
    after_verbs = [_win("a chef fried the soup", [0, 0, 0, 2, 0]), _win("the cow liked the ball", [0, 0, 0, 1, 0])]
    (explanation,) = judge.explain([after_verbs], [0.05])
    assert explanation == "tokens 'the' after verbs"
    (simulated,) = judge.simulate([explanation], [[_win("the chef fried the soup")]])
    assert simulated == [[0.0, 0.0, 0.0, 1.0, 0.0]]
    mixed = [_win("the lovely loan .", [0, 0, 3, 1]), _win("a costly loan grew", [0, 0, 2, 0])]
    (explanation,) = judge.explain([mixed], [0.05])
    assert explanation == "tokens 'loan'"  # a lone '.' in no stated context tells the reader nothing


# --- OpenAI-compatible endpoints -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_toy_model(trained_toy_lm):
    """`transformers serve` on loopback, serving the trained toy model (its answers are nonsense)."""
    cli = shutil.which("transformers", path=str(Path(sys.executable).parent))
    if cli is None:
        pytest.skip("transformers[serving] is not installed")
    port = _free_port()
    proc = subprocess.Popen([cli, "serve", str(trained_toy_lm), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not come up")
        yield f"{url}/v1", str(trained_toy_lm)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_openai_backend_against_transformers_serve(served_toy_model, tmp_path):
    base_url, model = served_toy_model
    backend = OpenAICompatibleBackend(base_url, model, max_concurrency=4, max_retries=1, timeout_s=60)
    judge = Judge(backend, JudgeCache(tmp_path, backend.name, backend.model))
    windows = [[_win("the cow ate"), _win("a song"), _win("the storm blew")]] * 3
    picks = judge.detect(["farming words", "music", "weather"], windows)
    assert judge.stats.calls == 3 and judge.stats.prompt_tokens > 0 and judge.stats.completion_tokens > 0
    # The toy LM answers in toy-world words, never a list of numbers: counted as unparseable.
    assert judge.stats.unparseable == sum(p is None for p in picks) == 3
    judge.detect(["farming words", "music", "weather"], windows)  # unparseable answers are never cached
    assert judge.stats.calls == 6 and judge.stats.cached == 0


class _Flaky(QuietHandler):
    """Answers 429 twice, then a chat completion; or always ``status`` when set."""

    hits = 0
    status: int | None = None

    def do_POST(self):
        type(self).hits += 1
        reply(self, type(self).status or (429 if type(self).hits <= 2 else 200), "2, 3", {"Retry-After": "0"})


@pytest.fixture
def flaky_server():
    _Flaky.hits, _Flaky.status = 0, None
    with serving(_Flaky) as url:
        yield url


def test_retries_on_429_then_answers(flaky_server):
    judge = Judge(OpenAICompatibleBackend(flaky_server, "m", max_retries=3, timeout_s=5))
    assert judge.detect(["x"], [[_win("a"), _win("b"), _win("c")]]) == [[False, True, True]]
    assert _Flaky.hits == 3 and judge.stats.prompt_tokens == 7


def test_auth_failure_and_dead_endpoint_are_one_clear_line(flaky_server, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret-value")
    _Flaky.status = 401
    with pytest.raises(JudgeError) as err:
        OpenAICompatibleBackend(flaky_server, "m", api_key_env="JUDGE_KEY", max_retries=2).complete(
            prompts.rate_request("fluency", "", "", "text"))
    assert "authentication refused (HTTP 401); check $JUDGE_KEY" in str(err.value)
    assert "sk-secret" not in str(err.value) and _Flaky.hits == 1  # no retry on 401
    _Flaky.status, _Flaky.hits = 503, 0
    with pytest.raises(JudgeError, match="HTTP 503 for model 'm' after 2 retries"):
        OpenAICompatibleBackend(flaky_server, "m", max_retries=2).complete(prompts.rate_request("fluency", "", "", "t"))
    assert _Flaky.hits == 3
    with pytest.raises(JudgeError, match=r"judge endpoint http://127.0.0.1:9/v1: Connection\w* after 1 retries"):
        OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m", max_retries=1, timeout_s=2).complete(
            prompts.rate_request("fluency", "", "", "t"))


def test_local_transformers_chat_backend(trained_toy_lm):
    from sae_models.judges.local import TransformersChatBackend

    backend = TransformersChatBackend(str(trained_toy_lm))
    judge = Judge(backend)
    (rating,) = judge.rate("fluency", [""], [""], ["the cow ate"])
    assert judge.stats.calls == 1 and judge.stats.completion_tokens > 0
    assert rating is None and judge.stats.unparseable == 1  # a toy LM does not answer "Rating: [[n]]"
    # the answer is the model's own greedy continuation of the chat-formatted prompt, not an empty string
    request = JudgeRequest("rate", ({"role": "user", "content": "tell me about farming ."},), max_tokens=6)
    answer = backend.complete(request)
    tok, model = backend._lm.tokenizer, backend._lm.model
    ids = tok.apply_chat_template(list(request.messages), add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)["input_ids"]
    direct = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                            pad_token_id=tok.pad_token_id)[0, ids.shape[1]:]
    assert answer.text.strip() and answer.text == tok.decode(direct, skip_special_tokens=True)


def test_rating_prompts_have_axbenchs_shape():
    """A judge instruction, the concept or instruction and the text in delimited blocks, a reason, then the
    rating line; fluency sees the text alone."""
    concept = prompts.rate_request("concept", "dogs", "tell me about cats", "a dog barked")
    system, user = (m["content"] for m in concept.messages)
    assert "Rating: [[n]]" in system and "reason" in system
    assert "[Concept Start]\ndogs\n[Concept End]" in user and "[Text Fragment Start]\na dog barked" in user
    assert "cats" not in user
    fluency = prompts.rate_request("fluency", "dogs", "tell me about cats", "a dog barked").messages[1]["content"]
    assert "dogs" not in fluency and "cats" not in fluency
    with pytest.raises(ValueError, match="rating kind"):
        prompts.rate_request("style", "", "", "")


def test_progress_lines_come_at_most_once_per_interval(monkeypatch):
    from sae_models.progress import Progress

    clock = iter([0.0, 1.0, 10.5, 11.0, 25.0])
    monkeypatch.setattr("sae_models.progress.time.monotonic", lambda: next(clock))
    lines: list[str] = []
    progress = Progress(lines.append, every=10.0)  # created at t = 0
    for message in "abcd":  # at t = 1, 10.5, 11, 25
        progress(message)
    assert lines == ["b", "d"]
