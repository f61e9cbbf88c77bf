"""Slot extraction for tool commands."""

from __future__ import annotations

import pytest

from nlp_core.ner.slots import extract_slots, find_algorithm, find_environment, parse_number


def test_the_issue_example() -> None:
    assert extract_slots("train a DQN on CartPole for 20k steps") == {
        "algorithm": "dqn", "env": "CartPole-v1", "steps": 20000, "numbers": [20000]}


@pytest.mark.parametrize(("text", "value"), [
    ("20k", 20000), ("1e5", 100000), ("10,000", 10000), ("0.99", 0.99), ("2.5k", 2500),
    ("3", 3), ("1M", 1_000_000), ("1e-3", 0.001)])
def test_numbers(text: str, value: float) -> None:
    assert parse_number(text) == value
    assert type(parse_number(text)) is type(value)


@pytest.mark.parametrize(("text", "env"), [
    ("on CartPole-v1", "CartPole-v1"), ("cart pole", "CartPole-v1"),
    ("cart-pole-v0", "CartPole-v0"), ("FrozenLake", "FrozenLake-v1"),
    ("frozen lake 8x8", "FrozenLake8x8-v1"), ("Taxi", "Taxi-v3"), ("taxing times", None),
    ("mountain car continuous", "MountainCarContinuous-v0")])
def test_environments(text: str, env: str | None) -> None:
    assert find_environment(text) == env


@pytest.mark.parametrize(("text", "algorithm"), [
    ("run q-learning", "q-learning"), ("Q learning please", "q-learning"),
    ("expected sarsa vs sarsa", "expected-sarsa"), ("REINFORCE", "reinforce"),
    ("a2c", "a2c"), ("cross-entropy method", "cem"), ("value iteration", "value-iteration"),
    ("fit EM", "em"), ("a VAE on mnist", "vae"), ("GP regression", "gp"), ("mcmc", "mcmc"),
    ("LDA topics", "lda"), ("them all", None), ("gpu", None)])
def test_algorithms(text: str, algorithm: str | None) -> None:
    assert find_algorithm(text) == algorithm


def test_units_keywords_and_key_value_pairs() -> None:
    slots = extract_slots("sarsa on Taxi-v3, 10,000 episodes, gamma 0.9 lr=0.5 render=true "
                          "name='my run'")
    assert slots["algorithm"] == "sarsa"
    assert slots["env"] == "Taxi-v3"
    assert slots["episodes"] == 10000
    assert slots["gamma"] == 0.9
    assert slots["lr"] == 0.5
    assert slots["render"] is True
    assert slots["name"] == "my run"
    assert slots["numbers"] == [10000, 0.9]  # key=value numbers are not free numbers


def test_no_slots() -> None:
    assert extract_slots("hello there") == {"numbers": []}
