"""The third bad-input sweep: each case that was silent or unclear, now refused (or handled) with a message that
names the input and what to change."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch
from conftest import tiny_lm

from transformers_taro import TARoGuide, TARoGuideConfig, TARoRouterConfig
from transformers_taro.cli import main
from transformers_taro.guide import check_reward_model_names, load_guide, named_reward_models
from transformers_taro.tasks import TASKS

IDS = torch.tensor([[1, 5, 7]])


def two_model_guide(folder, vocab=96):
    models = {"a": tiny_lm(seed=2, vocab=vocab), "b": tiny_lm(seed=3, vocab=vocab)}
    TARoGuide(models, alpha={"a": 1.0, "b": 1.0}).save_pretrained(folder)
    return str(folder)


# -- silent before ---------------------------------------------------------------------------------------------------


def test_eval_resume_refuses_another_reward_model_at_the_same_weight(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    guide = tmp_path / "g"
    two_model_guide(guide, vocab=len(AutoTokenizer.from_pretrained(tiny_model_dir)))
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(guide / "reward_models" / "a")
    args = ["eval", "--task", "gsm8k", "--base_model", tiny_model_dir, "--guide", str(guide), "--limit", "2"]
    args += ["--max_new_tokens", "2", "--output_dir", str(tmp_path / "out")]
    main([*args, "--method", "genarm:a"])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["reward_models_used"] == ["a"] and report["guide"] == str(guide)
    with pytest.raises(SystemExit, match="other settings.*genarm:b"):
        main([*args, "--method", "genarm:b"])


def test_an_empty_path_in_name_equals_path_is_refused():
    with pytest.raises(ValueError, match="'a=' has an empty path"):
        named_reward_models(["a=", "b=x"])
    with pytest.raises(ValueError, match="empty path"):
        load_guide(reward_model=["a=", "b=x"], alpha={"a": 1, "b": 1})


def test_a_weight_for_a_reward_model_the_method_leaves_out_is_refused_or_named(tmp_path, caplog):
    folder = two_model_guide(tmp_path / "g")
    with pytest.raises(ValueError, match=r"weights for \['b'\] only, but method 'genarm:a'"):
        load_guide(folder, method="genarm:a", alpha={"b": 3.0})
    with caplog.at_level(logging.WARNING, logger="transformers_taro.guide"):
        guide = load_guide(folder, method="genarm:a", alpha={"a": 2.0, "b": 3.0})
    assert guide.alpha == 2.0 and "weights for ['b'] are not used" in caplog.text


def test_a_null_weight_is_refused_in_a_saved_config_and_in_the_constructor(tmp_path):
    folder = tmp_path / "g"
    two_model_guide(folder)
    config = json.loads((folder / "guide_config.json").read_text())
    (folder / "guide_config.json").write_text(json.dumps({**config, "alpha": {"a": 1, "b": None}}))
    with pytest.raises(ValueError, match=r"guide_config.json: alpha has no weight \(missing or null\) for \['b'\]"):
        TARoGuide.from_pretrained(folder)
    with pytest.raises(ValueError, match=r"no weight \(missing or null\) for \['b'\]"):
        TARoGuide({"a": tiny_lm(seed=2), "b": tiny_lm(seed=3)}, alpha={"a": 1.0, "b": None})


@pytest.mark.parametrize(
    "make",
    [
        lambda: TARoGuideConfig(method="genarm", alpha=1.0, vocab_size=True),
        lambda: TARoGuide(tiny_lm(seed=2), alpha=True),
        lambda: TARoGuide({"a": tiny_lm(seed=2), "b": tiny_lm(seed=3)}, alpha={"a": True, "b": False}),
        lambda: TARoRouterConfig(num_reward_models=True),
    ],
    ids=["vocab_size", "alpha", "named alpha", "num_reward_models"],
)
def test_booleans_are_not_taken_as_numbers(make):
    with pytest.raises(ValueError, match="boolean|whole number|must be a number"):
        make()


def test_a_null_question_is_refused_not_asked_as_none():
    task = TASKS["jsonl"]([{"question": None, "answer": "3"}])
    with pytest.raises(ValueError, match="row 0 .* null"):
        task.check_rows(0, 1)


# -- unclear before --------------------------------------------------------------------------------------------------


def test_names_too_long_for_a_folder_or_differing_only_in_case_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at most 64"):
        check_reward_model_names(["a" * 300])
    with pytest.raises(ValueError, match="differ only in case"):
        TARoGuide({"Arith": tiny_lm(seed=2), "arith": tiny_lm(seed=3)}, alpha={"Arith": 1, "arith": 1})
    assert not (tmp_path / "g").exists()


def test_a_prompt_mask_of_another_shape_and_one_dimensional_ids_are_named():
    base, guide = tiny_lm(seed=1), TARoGuide(tiny_lm(seed=2), alpha=1.0)
    for fused in (None, False):
        with pytest.raises(ValueError, match=r"attention_mask has shape \[1, 2\] and input_ids \[1, 3\]"):
            guide.generate(base, input_ids=IDS, attention_mask=torch.ones(1, 2, dtype=torch.long), fused=fused)
    with pytest.raises(ValueError, match=r"input_ids must be \[batch, length\].*unsqueeze\(0\)"):
        guide.generate(base, input_ids=IDS[0], max_new_tokens=2)


def test_a_reward_model_on_the_meta_device_is_refused():
    with torch.device("meta"):
        rm = tiny_lm(seed=2)
    with pytest.raises(ValueError, match="'meta' device"):
        TARoGuide(rm, alpha=1.0)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_reward_model_weights_name_the_file(tmp_path):
    folder = tmp_path / "g"
    two_model_guide(folder)
    weights = folder / "reward_models" / "b" / "model.safetensors"
    _truncate(weights)
    with pytest.raises(ValueError, match=f"{weights} is corrupt or truncated"):
        TARoGuide.from_pretrained(folder)


def _lora_guide(tmp_path):
    from peft import LoraConfig, get_peft_model

    base_dir = tmp_path / "base"
    tiny_lm(seed=1).save_pretrained(base_dir)
    from transformers import AutoModelForCausalLM

    adapter = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), LoraConfig(r=2, target_modules=["q_proj"]))
    adapter.save_pretrained(tmp_path / "adapter")
    TARoGuide(None, alpha=1.0, adapter_folder=tmp_path / "adapter").save_pretrained(tmp_path / "g")
    return tmp_path / "g" / "reward_model"


def test_a_truncated_adapter_is_caught_when_the_guide_is_built(tmp_path):
    rm_dir = _lora_guide(tmp_path)
    _truncate(rm_dir / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="adapter_model.safetensors is corrupt or truncated"):
        TARoGuide.from_pretrained(tmp_path / "g")
    with pytest.raises(ValueError, match="adapter_model.safetensors is corrupt or truncated"):
        TARoGuide(None, alpha=1.0, adapter_folder=rm_dir)


def test_an_adapter_config_without_its_rank_is_named(tmp_path):
    rm_dir = _lora_guide(tmp_path)
    config = json.loads((rm_dir / "adapter_config.json").read_text())
    del config["r"]
    (rm_dir / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="adapter_config.json has no LoRA rank 'r'"):
        TARoGuide.from_pretrained(tmp_path / "g")


def test_a_system_prompt_that_is_not_text_is_refused_when_the_config_loads(tmp_path):
    folder = tmp_path / "g"
    TARoGuide(tiny_lm(seed=2), alpha=1.0).save_pretrained(folder)
    config = json.loads((folder / "guide_config.json").read_text())
    (folder / "guide_config.json").write_text(json.dumps({**config, "system_prompt": 5}))
    with pytest.raises(ValueError, match="system_prompt must be text"):
        TARoGuide.from_pretrained(folder)


def test_an_unmerged_peft_model_with_trainable_tokens_guides_on_the_processor_path():
    from peft import LoraConfig, get_peft_model

    rm = get_peft_model(tiny_lm(seed=2), LoraConfig(r=2, target_modules=["q_proj"], trainable_token_indices=[3, 4]))
    base = tiny_lm(seed=1)
    out = TARoGuide(rm, alpha=1.0).generate(base, input_ids=IDS, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)


def test_a_truncated_run_file_is_named_on_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    args = ["eval", "--task", "gsm8k", "--base_model", tiny_model_dir, "--method", "base", "--limit", "1"]
    args += ["--max_new_tokens", "2", "--output_dir", str(out)]
    main(args)
    text = (out / "run.json").read_text()
    (out / "run.json").write_text(text[: len(text) // 2])
    with pytest.raises(SystemExit, match="run.json .*delete .* to start over"):
        main(args)


# -- also --------------------------------------------------------------------------------------------------------


def test_the_cli_shows_a_library_error_as_one_line_and_the_traceback_with_debug(tmp_path, capsys):
    args = ["generate", "2 + 3?", "--reward_model", "a=", "--reward_model", "b=x", "--alpha", "a=1", "--alpha", "b=1"]
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert str(stop.value).startswith("taro generate: error: Reward model 'a=' has an empty path")
    assert "\n" not in str(stop.value)
    with pytest.raises(ValueError, match="empty path"):
        main([*args, "--debug"])


def test_max_new_tokens_is_checked_before_anything_loads(monkeypatch, capsys):
    import transformers_taro.evaluation.session as session

    monkeypatch.setattr(session, "load_session", lambda *a, **k: pytest.fail("loaded models"))
    for value in ("0", "-3", "x"):
        with pytest.raises(SystemExit):
            main(["generate", "2 + 3?", "--max_new_tokens", value])
        assert "--max_new_tokens" in capsys.readouterr().err


def test_a_killed_saves_scratch_folder_is_removed_by_the_next_save(tmp_path):
    guide = TARoGuide(tiny_lm(seed=2), alpha=1.0)
    dead = 2**22 + 12345  # above the default pid_max of 2**22: no process has it
    for left in (f".g.saving-{dead}-abc", ".g.saving-old"):
        (tmp_path / left).mkdir()
        (tmp_path / left / "partial.bin").write_bytes(b"x")
    os.utime(tmp_path / ".g.saving-old", (0, 0))  # an older version's, long untouched
    live = tmp_path / f".g.saving-{os.getpid()}-mine"  # this process's: never removed by a sweep
    live.mkdir()
    guide.save_pretrained(tmp_path / "g")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "g"]


def test_a_stale_lock_with_this_process_id_is_taken_over(tmp_path):
    from transformers_taro.evaluation.runner import _writer_lock

    (tmp_path / ".writing.lock").write_text(str(os.getpid()))  # left by an earlier process that had this pid
    with _writer_lock(tmp_path):
        assert (tmp_path / ".writing.lock").read_text() == str(os.getpid())
        with pytest.raises(RuntimeError, match="this process is already writing"), _writer_lock(tmp_path):
            pass
    assert not (tmp_path / ".writing.lock").exists()
