"""The curriculum's draws and layout: deterministic per (seed, stage, step), the same batches on any number
of processes, the reference's handling of traces shorter than the stage, and the splitters."""

import pytest

from reasonkit.latent.data import CurriculumExample, build_batch, draw, rest_text
from reasonkit.latent.splitters import SPLITTERS, sentences
from reasonkit.latent.thoughts import ThoughtTokens
from reasonkit.tasks.arithmetic import teacher_trace

TOKENS = ThoughtTokens(bot=100, eot=101, latent=102)


class CharacterTokenizer:
    """One id per character; pad 0, EOS 1."""

    pad_token_id, eos_token_id = 0, 1

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[ord(c) for c in text] for text in texts]}


def test_each_epoch_visits_every_example_once_and_draws_do_not_depend_on_the_split():
    seen = [i for step in range(5) for i in draw(10, 2, 1, step, seed=3, mix_earlier=0.0)[0]]
    assert sorted(seen) == list(range(10))
    whole = draw(10, 4, 2, 7, seed=3, mix_earlier=0.5)
    assert draw(10, 4, 2, 7, seed=3, mix_earlier=0.5) == whole  # every process computes the same batch
    assert draw(10, 4, 2, 7, seed=4, mix_earlier=0.5) != whole


def test_mixing_trains_a_share_of_rows_at_earlier_stages():
    stages = [s for step in range(200) for s in draw(50, 8, 3, step, seed=0, mix_earlier=0.25)[1]]
    earlier = [s for s in stages if s < 3]
    assert len(earlier) / len(stages) == pytest.approx(0.25, abs=0.03)
    assert set(earlier) == {0, 1, 2}
    assert set(draw(50, 8, 3, 0, seed=0, mix_earlier=0.0)[1]) == {3}


def test_rows_share_the_bot_column_and_the_loss_covers_the_text_after_the_thoughts():
    examples = [
        CurriculumExample([5, 6, 7], ["a.", "b.", "c."], "9"),
        CurriculumExample([5, 6], ["a.", "b."], "8"),
    ]
    batch = build_batch(examples, [1, 2], CharacterTokenizer(), TOKENS, thoughts_per_step=2, think_close="|")
    assert batch.bot_column == 3
    first, second = batch.input_ids.tolist()
    assert first[:8] == [5, 6, 7, 100, 102, 102, 101, ord("b")]  # 1 step latent: 2 thoughts
    assert second[:9] == [0, 5, 6, 100, 102, 102, 102, 102, 101]  # left-padded to the same <|bot|> column
    assert batch.attention_mask[1, 0] == 0
    assert batch.thought_mask[0].nonzero().flatten().tolist() == [4, 5]
    assert batch.thought_mask[1].nonzero().flatten().tolist() == [4, 5, 6, 7]
    labelled = [t for t in batch.labels[0].tolist() if t != -100]
    assert "".join(chr(t) for t in labelled[:-1]) == "b. c.|9" and labelled[-1] == 1  # ... then EOS
    assert batch.short_traces == 0


def test_a_trace_shorter_than_its_stage_loses_every_step_and_keeps_k_times_c_thoughts():
    """As the reference: n_skip = k (all steps when fewer), k*c thoughts, and the row is counted."""
    examples = [CurriculumExample([5], ["a."], "9")]
    batch = build_batch(examples, [3], CharacterTokenizer(), TOKENS, thoughts_per_step=1, think_close="|")
    assert int(batch.thought_mask.sum()) == 3
    labelled = [chr(t) for t in batch.labels[0].tolist() if t not in (-100, 1)]
    assert "".join(labelled) == "|9"
    assert batch.short_traces == 1
    assert rest_text(["a."], 3, "9", "|") == "|9"


def test_the_sentence_splitter_cuts_the_teachers_trace_into_its_steps():
    trace = teacher_trace(27, 34)
    assert sentences(trace) == ["27 * 30 = 810.", "27 * 4 = 108.", "810 + 108 = 918."]
    assert " ".join(sentences(trace)) == trace
    assert SPLITTERS.get("sentences") is sentences
