"""``papercore demo ilp-diag``: conflicting near-duplicates are unlearned, and only graded detection sees it.

A tiny Llama is pre-trained on a small fact world (``ilp_diag.synthetic``), fine-tuned with TRL on an SFT set
with planted conflicting duplicates (C3) and controls, and re-prompted with its training inputs. Metric:
the fraction of C3 samples flagged unlearned under ``graded`` (the method) vs under ``pass@n`` (baseline),
where sampling hits every conflicting variant and hides the problem.
"""

from __future__ import annotations

import tempfile
import time

from papercore.demo import DemoResult

__all__ = ["run_demo"]


def run_demo(seed: int = 0) -> DemoResult:
    from ilp_diag.detect import detect_unlearned, unlearned_mask
    from ilp_diag.judges import ExactMatchJudge
    from ilp_diag.sft import sft_train
    from ilp_diag.synthetic import PlantedWorld, WorldPretrainTask, build_world
    from papercore.generation import make_backend
    from papercore.models import load_model
    from papercore.seeding import seed_everything, torch_threads
    from papercore.testing.training import TrainSettings, train_tiny_lm

    t0 = time.perf_counter()
    world: PlantedWorld = build_world(
        seed,
        n_pre=24,
        n_control=40,
        n_c1=0,
        n_c2=0,
        n_c3_clusters=6,
        n_c4=0,
        n_c5=0,
        n_stage0_controls=0,
    )
    tok = world.tokenizer()
    with tempfile.TemporaryDirectory() as tmp, torch_threads(1):
        base_dir = train_tiny_lm(
            WorldPretrainTask(world),
            cache_dir=tmp,
            tokenizer=tok,
            settings=TrainSettings(steps=500, lr=3e-3, seed=seed),
            model_kwargs=dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128),
        )
        model = load_model(str(base_dir)).train()
        seed_everything(seed)
        sft_train(model, tok, world.records, epochs=8, lr=1e-3, batch_size=16, seed=seed)
        df = detect_unlearned(
            make_backend("transformers", model=model, tokenizer=tok, batch_size=32),
            world.records,
            ExactMatchJudge(),
            n=8,
            temperature=1.0,
            seed=seed,
        )
    c3 = df["idx"].map(world.group) == "C3"
    graded = float(unlearned_mask(df[c3], "graded").mean())
    passn = float(unlearned_mask(df[c3], "pass@n").mean())
    ctrl = float(df.loc[~c3, "unlearned"].mean())
    return DemoResult(
        method="graded detection",
        baseline="pass@n detection",
        metric="C3 conflicting duplicates flagged unlearned",
        value=graded,
        baseline_value=passn,
        details={"controls_unlearned": ctrl, "n_c3": int(c3.sum()), "n_controls": int((~c3).sum())},
        package="ilp-diag",
        seconds=time.perf_counter() - t0,
        floor=ctrl,
        floor_name="controls' unlearned rate",
    )
