"""Past answers read back by prompt run (group id), newest first, and a whole group deleted at once."""

from __future__ import annotations

from pathlib import Path

from models.cli import main
from models.results.answers_records import delete_answer_group, stored_answer_groups
from models.results.measurements import list_measurements
from models.results.store import ResultsStore


def _answers(model: Path, prompt: str, seed: int) -> None:
    assert main(["answers", str(model), str(model), "--prompt", prompt, "--temp", "0.7", "-n", "4", "-s", str(seed),
                 "-t", "2"]) == 0


def test_answers_group_by_prompt_run_newest_first_and_a_group_deletes_whole(starter_model: Path, capsys) -> None:
    _answers(starter_model, "Name a colour.", 11)
    _answers(starter_model, "Name a fruit.", 22)
    capsys.readouterr()
    with ResultsStore() as store:
        groups = stored_answer_groups(store)
        assert [g.prompt for g in groups] == ["Name a fruit.", "Name a colour."]  # newest first
        fruit, colour = groups
        assert fruit.models == [starter_model.name, starter_model.name] and len(fruit.ids) == 2
        assert fruit.sampling["seed"] == 22 and colour.sampling["seed"] == 11
        assert fruit.sampling["temperature"] == 0.7 and fruit.status == "ok"
        assert all(m.data["text"] and m.data["ttft_ms"] > 0 for m in fruit.answers)
        assert fruit.started_at >= colour.started_at
        assert [g.prompt for g in stored_answer_groups(store, limit=1)] == ["Name a fruit."]

        assert delete_answer_group(store, "no-such-group") == 0
        assert delete_answer_group(store, fruit.group) == 2
        (left,) = stored_answer_groups(store)
        assert left.group == colour.group and left.ids == colour.ids
        assert sorted(m.id for m in list_measurements(store, kind="answers")) == sorted(colour.ids)
