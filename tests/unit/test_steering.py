"""Steering utility: bad input fails before any generation, naming it; HM and the dev/test choice
of the factor; instruction sets; the toy judge's ratings."""

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from sae_models.evals.config import SteeringConfig
from sae_models.evals.instructions import (
    BUNDLED,
    InstructionError,
    chat_prompt,
    instructions_for,
    load_instructions,
)
from sae_models.evals.steering import (
    GenerationRow,
    RatingRow,
    SteeringConcept,
    SteeringInputError,
    concept_magnitudes,
    harmonic_mean,
    plan_steering,
    score_concepts,
)
from sae_models.judges.toyworld import ToyworldBackend
from sae_models.sae import SAEConfig, build_sae
from sae_models.sae.sweep import SAEIdentity


def _sae():
    torch.manual_seed(0)
    return build_sae(SAEConfig("topk", 8, 16, k=2))


def test_a_dead_or_out_of_range_latent_is_one_error_naming_it():
    sae = _sae()
    assert [c.latent for c in concept_magnitudes(sae, [0, 1, 3], [1.0, 2.0, 0.5])] == [0, 1, 3]
    with pytest.raises(SteeringInputError, match=r"latents \[3\] have m_f = 0 .*decoder row\): a zero steering "
                                                 r"vector cannot steer$"):
        concept_magnitudes(sae, [1, 3], [2.0, 0.0])
    with pytest.raises(SteeringInputError, match=r"latents \[16\] are out of range: the SAE has 16 latents"):
        concept_magnitudes(sae, [1, 16], [2.0, 1.0])


def test_m_f_is_the_max_code_times_the_decoder_norm():
    sae = _sae()
    with torch.no_grad():
        sae.W_dec[2] *= 3 / sae.W_dec[2].norm()
    (c,) = concept_magnitudes(sae, [2], [0.5])
    assert c.magnitude == pytest.approx(1.5)


@pytest.mark.parametrize("factors, message", [
    ([], "factors is empty"), ([1.0, float("nan")], "finite number > 0"), ([float("inf")], "finite number > 0"),
    ([-1.0], "finite number > 0"),
])
def test_bad_factor_lists_are_rejected_by_the_config(factors, message):
    with pytest.raises(ValidationError, match=message):
        SteeringConfig(factors=factors)


def test_dev_instructions_must_leave_a_test_half():
    with pytest.raises(ValidationError, match="leaves no test instruction"):
        SteeringConfig(instructions_per_concept=4, dev_instructions=4)


def test_instruction_files_read_jsonl_and_parquet_and_name_what_is_wrong(tmp_path):
    good = tmp_path / "ins.jsonl"
    good.write_text('{"instruction": "Say hi."}\n\n{"id": "x", "instruction": "Count to three."}\n')
    assert [(i.id, i.text) for i in load_instructions(str(good))] == [("i0000", "Say hi."), ("x", "Count to three.")]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"instruction": ["A?", "B?"]}), tmp_path / "ins.parquet")
    assert [i.text for i in load_instructions(str(tmp_path / "ins.parquet"))] == ["A?", "B?"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok"}\nnot json\n')
    with pytest.raises(InstructionError, match=r"bad.jsonl, line 2: expected a JSON object"):
        load_instructions(str(bad))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InstructionError, match="no instruction found"):
        load_instructions(str(empty))
    blank = tmp_path / "blank.jsonl"
    blank.write_text(json.dumps({"instruction": "  "}) + "\n")
    with pytest.raises(InstructionError, match="entry 1 has an empty"):
        load_instructions(str(blank))
    with pytest.raises(InstructionError, match="no such file"):
        load_instructions(str(tmp_path / "missing.jsonl"))
    pq.write_table(pa.table({"text": ["A?"]}), tmp_path / "nocol.parquet")
    with pytest.raises(InstructionError, match="no 'instruction' column"):
        load_instructions(str(tmp_path / "nocol.parquet"))


def test_instruction_sets_and_the_per_concept_draw():
    assert len(BUNDLED) >= 60 and len(set(BUNDLED)) == len(BUNDLED)
    toy = load_instructions("auto", toy=True)
    assert len(toy) == 16 and toy[0].prompt.startswith("question : tell me about ")
    assert len(load_instructions("auto")) == len(BUNDLED)
    pool = load_instructions("bundled")
    picks = instructions_for(7, pool, 10, seed=0)
    assert len({p.id for p in picks}) == 10
    assert instructions_for(7, pool[::-1], 10, seed=0) == picks  # the pool's order does not matter
    assert instructions_for(8, pool, 10, seed=0) != picks
    with pytest.raises(InstructionError, match="holds 16"):
        instructions_for(1, toy, 17, seed=0)


def test_chat_template_wraps_the_instruction_without_a_second_bos():
    class Tok:
        bos_token = "<bos>"
        chat_template = "x"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return f"<bos><user>{messages[0]['content']}<end><model>"

    assert chat_prompt(Tok(), "Hi") == "<user>Hi<end><model>"
    assert chat_prompt(Tok(), "Hi", use_template=False) == "Hi"


def test_plan_has_every_factor_and_the_unsteered_row_with_dev_and_test_halves():
    cfg = SteeringConfig(factors=(1.0, 2.0), instructions_per_concept=4, dev_instructions=2)
    rows = plan_steering([SteeringConcept(3, 1.0), SteeringConcept(5, 2.0)], load_instructions("toyworld"), cfg,
                         lambda *key: hash(key) & 0xFFFF)
    assert len(rows) == 2 * 4 * 3
    assert {r.factor for r in rows} == {0.0, 1.0, 2.0}
    assert sum(r.split == "test" for r in rows if r.latent == 3 and r.factor == 2.0) == 2
    assert {r.split for r in rows} == {"dev", "test"}
    assert all(r.seed == hash((r.latent, r.factor, r.instruction.id)) & 0xFFFF for r in rows)
    assert {r.instruction.id for r in rows if r.latent == 5} == {i.id for i in instructions_for(
        5, load_instructions("toyworld"), 4, cfg.seed)}


def test_harmonic_mean_is_zero_when_any_rating_is_zero():
    assert harmonic_mean((2, 2, 2)) == 2 and harmonic_mean((2, 0, 2)) == 0
    assert harmonic_mean((1, 2, 2)) == pytest.approx(3 / (1 + 0.5 + 0.5))


def _rating(latent, factor, split, hm):
    return RatingRow(latent, factor, "i", split, 1, 1, 1, hm, 0)


def test_the_factor_is_chosen_on_dev_and_scored_on_test():
    ratings = [_rating(1, 0.0, "dev", 2.0), _rating(1, 0.0, "test", 0.5),
               _rating(1, 1.0, "dev", 1.5), _rating(1, 1.0, "test", 0.2),
               _rating(1, 2.0, "dev", 0.5), _rating(1, 2.0, "test", 1.8)]
    (score,) = score_concepts(ratings, [SteeringConcept(1, 1.0)], {1: "c"})
    assert score.best_factor == 1.0  # factor 0 is never chosen; dev picks 1.0 although test prefers 2.0
    assert score.test_hm == 0.2 and score.unsteered_test_hm == 0.5
    assert score.best_test_factor == 2.0 and score.best_test_hm == 1.8


def test_toy_judge_rates_by_word_shares_and_the_grammar():
    judge = ToyworldBackend()
    animals = "the furry puppy chased a rabbit . a kitten petted the tiger ."
    assert judge.rate("concept", "concept animals such as 'puppy' 'tiger'", "", animals) == 2
    assert judge.rate("concept", "concept food such as 'bread' 'cake'", "", animals) == 0
    assert judge.rate("instruct", "", "tell me about animals", animals) == 2
    assert judge.rate("instruct", "", "tell me about space", animals) == 0
    assert judge.rate("fluency", "", "", animals) == 2
    assert judge.rate("fluency", "", "", "the the a puppy . every every . the tiger chased a rabbit .") == 0
    assert judge.rate("fluency", "", "", "the puppy the . the tiger chased a rabbit .") == 1
    assert judge.rate("fluency", "", "", "the tiger chased") == 0  # no complete sentence


def test_toy_judge_reads_a_concepts_context_as_in_detection():
    judge = ToyworldBackend()
    school = "the clever student read a lesson . a teacher graded the exam ."
    food = "the tasty bread fed a cake . a chef sliced the fresh apple ."
    concept = "concept determiners such as 'the' 'a' in text about school"
    assert judge.rate("concept", concept, "", school) == 2
    assert judge.rate("concept", concept, "", food) == 0  # determiners, but not in text about school


class _ScriptedBackend:
    """Answers each rating request from a table keyed by (kind, text); anything else is unparseable."""

    name, model, max_concurrency = "scripted", "s", 1

    def __init__(self, answers: dict):
        self.answers = answers

    def complete(self, request):
        from sae_models.judges.protocol import Completion

        p = request.payload
        return Completion(self.answers.get((p["kind"], p["text"]), "no rating here"))


def _generation(latent, factor, split, text):
    return GenerationRow(latent, 1.0, factor, f"i-{split}-{text}", split, "tell me about food", "p", text, 3, 0)


def test_ratings_hm_alpha_and_g_from_a_scripted_judge():
    """Ratings become HM (an unparseable rating counts 0 and is counted), alpha* is chosen on dev, g is the
    mean test HM there, g_unsteered the test HM at factor 0, g_chosen_on_test the optimistic choice."""
    from sae_models.evals.steering import rate_steering, summarize
    from sae_models.judges import Judge

    def rated(text, c, i, f):
        return {("concept", text): f"Rating: [[{c}]]", ("instruct", text): f"Rating: [[{i}]]",
                ("fluency", text): f"ok. Rating: [[{f}]]"}

    answers = {**rated("d0", 1, 2, 2), **rated("t0", 1, 1, 1), **rated("d1", 2, 2, 2), **rated("t1", 1, 2, 1),
               **rated("d2", 2, 1, 1), **rated("t2", 2, 2, 2)}
    answers.pop(("fluency", "t1"))  # unparseable: counts as 0
    generations = [_generation(4, f, split, f"{split[0]}{k}") for k, f in enumerate((0.0, 1.0, 2.0))
                   for split in ("dev", "test")] + [_generation(9, 1.0, "test", "x")]
    judge = Judge(_ScriptedBackend(answers))
    ratings = rate_steering(generations, {4: "food words"}, judge)  # latent 9 has no concept text: not rated
    assert len(ratings) == 6 and {r.latent for r in ratings} == {4}
    by_text = {g.generation: r for g, r in zip([g for g in generations if g.latent == 4], ratings, strict=True)}
    assert by_text["t1"].fluency_rating == 0 and by_text["t1"].hm == 0 and by_text["t1"].unparseable == 1
    assert by_text["d2"].hm == pytest.approx(3 / (1 / 2 + 1 + 1))
    concepts = [SteeringConcept(4, 1.0), SteeringConcept(9, 1.0)]
    scores = score_concepts(ratings, concepts, {4: "food words"})
    (score,) = scores
    assert score.best_factor == 1.0 and score.dev_hm == 2.0 and score.test_hm == 0.0  # dev picks 1, test had 0
    assert score.dev_spread == pytest.approx(2.0 - 1.2)
    assert score.unsteered_test_hm == 1.0 and score.best_test_factor == 2.0 and score.best_test_hm == 2.0
    sae = SAEIdentity("topk", is_baseline=False, level=4.0, target_l0=4.0, l0=4.0)
    summary = summarize(scores, ratings, generations, len(concepts), judge, sae)
    assert (summary.g, summary.g_unsteered, summary.g_chosen_on_test) == (0.0, 1.0, 2.0)
    assert summary.n_concepts == 1 and summary.n_unexplained == 1 and summary.unparseable == 1
    assert summary.usage.unparseable == summary.unparseable  # the rating judge's own count of the same answers
    assert summary.usage.calls == 18 and summary.g_ci is None  # one concept: no interval


def test_ties_on_dev_take_the_smallest_factor_and_show_no_spread():
    ratings = [_rating(2, f, split, 0.0) for f in (0.0, 0.5, 3.0) for split in ("dev", "test")]
    (score,) = score_concepts(ratings, [SteeringConcept(2, 1.0)], {2: "c"})
    assert score.best_factor == 0.5 and score.dev_spread == 0.0


def test_the_rating_run_rates_the_explained_concepts_in_latent_order_and_sums_up_per_factor():
    """``run_steering_rating`` takes its concepts from the generations (sorted by latent, whatever their order),
    leaves a concept without an explanation out and counts it; ``by_factor`` averages every rating per factor."""
    from sae_models.evals.steering import by_factor, run_steering_rating
    from sae_models.judges import Judge

    texts = {"a": (2, 2, 2), "b": (1, 2, 1), "c": (0, 2, 2), "d": (2, 1, 1)}
    answers = {(kind, text): f"Rating: [[{r}]]" for text, rs in texts.items()
               for kind, r in zip(("concept", "instruct", "fluency"), rs, strict=True)}
    generations = [_generation(9, 1.0, "test", "x"), _generation(7, 0.0, "dev", "a"), _generation(7, 0.0, "test", "b"),
                   _generation(7, 2.0, "dev", "c"), _generation(7, 2.0, "test", "d")]
    judge = Judge(_ScriptedBackend(answers))
    sae = SAEIdentity("topk", is_baseline=False, level=4.0, target_l0=4.0, l0=4.0)
    result = run_steering_rating(generations, {7: "food words", 8: "unused"}, judge, sae)
    assert [r.latent for r in result.rows] == [7] * 4 and [c.latent for c in result.concepts] == [7]
    assert result.concepts[0].magnitude == 1.0 and result.summary.identity == sae
    assert result.summary.n_concepts == 1 and result.summary.n_unexplained == 1 and result.summary.n_generations == 5
    assert result.summary.g == pytest.approx(harmonic_mean((2, 1, 1))) and result.summary.g_unsteered == pytest.approx(
        harmonic_mean((1, 2, 1)))
    factors = by_factor(result.rows)
    assert [f["factor"] for f in factors] == [0.0, 2.0] and [f["n"] for f in factors] == [2, 2]
    assert factors[0]["hm"] == pytest.approx((2 + harmonic_mean((1, 2, 1))) / 2)
    assert factors[1]["concept"] == pytest.approx(1.0) and factors[1]["instruct"] == pytest.approx(1.5)
    assert factors[1]["fluency"] == pytest.approx(1.5) and factors[1]["hm"] == pytest.approx(
        harmonic_mean((2, 1, 1)) / 2)


def test_the_steered_concepts_are_a_seeded_draw_of_concept100_with_m_f_from_the_top_window():
    import pyarrow as pa

    from sae_models.evals.autointerp import concept_subset
    from sae_models.evals.config import AutointerpConfig
    from sae_models.evals.steering import steering_concepts

    sae = _sae()
    latents = list(range(2, 14))
    rows = [{"latent": f, "kind": kind, "rank": rank, "score": float(f) + (rank == 0) - 0.5 * (kind != "top")}
            for f in latents for kind in ("top", "random") for rank in (0, 1)]
    table = pa.Table.from_pylist(rows)
    cfg = AutointerpConfig(n_concept=6, seed=3)
    concepts = steering_concepts(sae, table, cfg, 4, seed=1)
    expected = concept_subset(concept_subset(np.array(latents), 6, 3), 4, 1).tolist()
    assert [c.latent for c in concepts] == expected and len(expected) == 4
    norms = sae.W_dec.detach().norm(dim=-1)
    assert [c.magnitude for c in concepts] == pytest.approx([(f + 1.0) * float(norms[f]) for f in expected])
    assert steering_concepts(sae, table.take(list(range(len(rows)))[::-1]), cfg, 4, seed=1) == concepts
    no_top = pa.Table.from_pylist([r for r in rows if not (r["latent"] == expected[0] and r["kind"] == "top")])
    with pytest.raises(SteeringInputError, match=rf"latents \[{expected[0]}\] have m_f = 0"):
        steering_concepts(sae, no_top, cfg, 4, seed=1)


def _score(latent, test_hm, ratings=(1.0, 1.0, 1.0)):
    from sae_models.evals.steering import ConceptScore

    return ConceptScore(latent, "c", 1.0, 1.0, 1.0, 0.0, test_hm, *ratings, test_hm / 2, 2.0, test_hm + 0.1)


def test_the_summary_holds_g_its_interval_the_mean_ratings_and_who_judged():
    from scipy.stats import t

    from sae_models.evals.steering import summarize
    from sae_models.judges import Judge

    scores = [_score(1, 0.2, (0.0, 1.0, 2.0)), _score(2, 0.5, (1.0, 2.0, 2.0)), _score(3, 1.1, (2.0, 0.0, 1.0))]
    generations = [_generation(1, 0.0, "test", "x"), _generation(2, 0.0, "test", "y")]
    generations[1] = GenerationRow(**{**vars(generations[1]), "n_tokens": 6})
    judge = Judge(_ScriptedBackend({}))
    sae = SAEIdentity("relu", is_baseline=False, level=0.1, target_l0=None, l0=7.5)
    s = summarize(scores, [], generations, 4, judge, sae)
    test = np.array([0.2, 0.5, 1.1])
    assert (s.judge, s.judge_model, s.identity) == ("scripted:s", "s", sae)
    assert s.g == pytest.approx(test.mean())
    assert s.g_ci == pytest.approx(t.ppf(0.975, 2) * test.std(ddof=1) / np.sqrt(3))
    assert s.g_unsteered == pytest.approx(test.mean() / 2) and s.g_chosen_on_test == pytest.approx(test.mean() + 0.1)
    assert (s.concept, s.instruct, s.fluency) == pytest.approx((1.0, 1.0, 5 / 3))
    assert (s.n_concepts, s.n_unexplained, s.n_generations, s.mean_tokens) == (3, 1, 2, pytest.approx(4.5))
    two = summarize(scores[:2], [], [], 2, judge, sae)
    assert two.g_ci == pytest.approx(t.ppf(0.975, 1) * np.std([0.2, 0.5], ddof=1) / np.sqrt(2))
    assert two.mean_tokens == 0.0  # no generations


def test_each_concept_score_names_its_latent_and_reads_the_ratings_at_the_chosen_factor():
    """A concept without ratings is skipped, not the end of the list; the test ratings are those at alpha*."""
    ratings = [RatingRow(5, f, "i", split, c, 2, 1, 0.0, 0) for f, c in ((0.0, 0), (1.0, 2), (2.0, 1))
               for split in ("dev", "test")]
    ratings = [RatingRow(**{**vars(r), "hm": 1.0 + (r.factor == 1.0)}) for r in ratings]
    scores = score_concepts(ratings, [SteeringConcept(4, 3.0), SteeringConcept(5, 2.5)], {4: "none", 5: "fives"})
    (score,) = scores
    assert (score.latent, score.concept, score.magnitude, score.best_factor) == (5, "fives", 2.5, 1.0)
    assert (score.test_concept, score.test_instruct, score.test_fluency) == (2.0, 2.0, 1.0)


def test_each_rating_row_keeps_its_generations_keys():
    from sae_models.evals.steering import rate_steering
    from sae_models.judges import Judge

    generations = [_generation(3, 2.0, "dev", "a"), _generation(3, 0.0, "test", "b")]
    rows = rate_steering(generations, {3: "c"}, Judge(_ScriptedBackend({})))
    assert [(r.latent, r.factor, r.instruction_id, r.split) for r in rows] == [
        (g.latent, g.factor, g.instruction_id, g.split) for g in generations]
    assert [r.unparseable for r in rows] == [3, 3]
