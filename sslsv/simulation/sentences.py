"""Random English sentences from a small embedded grammar (templates and word lists), the
text the synthetic mini corpus speaks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_NOUNS = (
    "river", "garden", "window", "teacher", "doctor", "bridge", "letter", "market", "island",
    "candle", "kitchen", "mountain", "village", "engine", "blanket", "question", "picture",
    "bottle", "forest", "station", "painter", "farmer", "captain", "basket", "ladder", "wagon",
    "mirror", "pocket", "theatre", "harbour", "lantern", "violin", "museum", "orchard",
    "tunnel", "castle", "meadow", "journal", "camera", "pillow", "rocket", "compass", "saddle",
)  # fmt: skip
_ADJECTIVES = (
    "quiet", "golden", "narrow", "ancient", "bright", "heavy", "gentle", "broken", "curious",
    "distant", "silver", "empty", "crowded", "little", "famous", "hidden", "frozen", "yellow",
    "careful", "wooden", "modern", "sudden", "patient", "clever", "shallow", "noisy", "humble",
)  # fmt: skip
_VERBS_PAST = (
    "carried", "painted", "followed", "repaired", "visited", "noticed", "borrowed", "opened",
    "counted", "described", "remembered", "watched", "collected", "delivered", "explored",
    "measured", "ordered", "polished", "reached", "lifted", "answered", "covered", "cleaned",
)  # fmt: skip
_VERBS_BASE = (
    "carry", "paint", "follow", "repair", "visit", "notice", "borrow", "open", "count",
    "describe", "remember", "watch", "collect", "deliver", "explore", "measure", "polish",
)  # fmt: skip
_NAMES = (
    "Anna", "Peter", "Maria", "Thomas", "Helen", "Oliver", "Sophie", "Daniel", "Laura",
    "Martin", "Clara", "Victor", "Julia", "Simon", "Emma", "Lucas", "Nina", "George",
)  # fmt: skip
_TIMES = (
    "yesterday", "this morning", "last winter", "every Sunday", "before dinner", "at noon",
    "after the storm", "in the evening", "next week", "during the summer", "at dawn", "today",
)  # fmt: skip
_PREPOSITIONS = ("near", "behind", "under", "beside", "across", "inside", "above", "beyond")
_ADVERBS = (
    "slowly", "quickly", "carefully", "happily", "quietly", "suddenly", "gladly", "rarely",
)  # fmt: skip
_TEMPLATES = (
    "The {adj} {noun} {prep} the {noun2} was {adj2}.",
    "{name} {verb} the {adj} {noun} {time}.",
    "We {verb} a {noun} {prep} the {adj} {noun2} {time}.",
    "Did {name} {verb0} the {noun} {prep} the {noun2}?",
    "{time_cap}, the {noun} {verb} the {adj} {noun2} {adv}.",
    "I think {name} will {verb0} the {adj} {noun} {time}.",
    "There were {number} {adj} {noun}s {prep} the {noun2}.",
    "Please {verb0} the {noun} and the {adj} {noun2}.",
    "{name} and {name2} {adv} {verb} {number} {noun}s.",
    "Why is the {noun} so {adj} {time}?",
    "The {noun} {verb} {number} times, {name} said.",
    "Nobody {verb} the {adj} {noun} {prep} the old {noun2}.",
)


def random_sentence(rng: np.random.Generator) -> str:
    """One sentence from the embedded templates and word lists."""

    def pick(words: Sequence[str]) -> str:
        return words[int(rng.integers(len(words)))]

    time_phrase = pick(_TIMES)
    slots = {
        "adj": pick(_ADJECTIVES),
        "adj2": pick(_ADJECTIVES),
        "noun": pick(_NOUNS),
        "noun2": pick(_NOUNS),
        "verb": pick(_VERBS_PAST),
        "verb0": pick(_VERBS_BASE),
        "name": pick(_NAMES),
        "name2": pick(_NAMES),
        "time": time_phrase,
        "time_cap": time_phrase[0].upper() + time_phrase[1:],
        "prep": pick(_PREPOSITIONS),
        "adv": pick(_ADVERBS),
        "number": str(int(rng.integers(2, 100))),
    }
    return pick(_TEMPLATES).format(**slots)
