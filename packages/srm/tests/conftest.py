"""Shared fixtures: a small KB world, a word-level tokenizer over it, tiny reward models and branches."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def world():
    from srm_reward.synthetic import make_world

    return make_world(n_entities=60, n_brands=8, seed=0)


@pytest.fixture(scope="session")
def word_tok(world, papercore_offline):
    from papercore.testing.builders import build_word_tokenizer

    return build_word_tokenizer(texts=tuple(world.vocabulary_texts()))


def make_rm(tok, seed: int = 0):
    """A tiny Llama sequence classifier (num_labels=1) over ``tok``."""
    from srm_reward.experiment import tiny_reward_model

    return tiny_reward_model(tok, seed=seed, hidden_size=32).eval()


@pytest.fixture
def rm_factory(word_tok):
    return lambda seed=0: make_rm(word_tok, seed)


@pytest.fixture
def prog_branches(world):
    from srm_reward import SideBranchModel
    from srm_reward.synthetic import IntentBranch, KBEntityBranch, OracleFactCheck, StyleBranch

    return [
        SideBranchModel("semantic", generate_fn=IntentBranch()),
        SideBranchModel("entity", generate_fn=KBEntityBranch(world)),
        SideBranchModel("factcheck", generate_fn=OracleFactCheck(world)),
        SideBranchModel("style", generate_fn=StyleBranch()),
    ]
