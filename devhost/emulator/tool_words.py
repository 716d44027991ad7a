"""Which tool a prompt is about, by words, and the place a prompt names.

A model given ``get_weather`` ("Get the current weather in a city") calls it when asked
"What is the weather in Oslo?" (OpenAI's function-calling guide: the model picks a
function from its name and description). The emulator plays that without a model: the
words of a tool's name (``get_weather`` → get, weather; ``getWeather`` likewise) and of
its description are compared with the significant words of the prompt (stop words and
the verbs every tool name starts with left out; a plural counts as its singular). A word
of the name scores 2, a word only in the description 1; the best score above 0 wins, the
first in ``tools`` order on a tie.

The place a prompt names is its first run of capitalised words that does not open a
sentence ("Oslo", "New York"): the value of a plain string property whose name is about a
place (``city``, ``location``, ``city_name`` ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_STOP_TEXT = """
a about above after again all also am an and any are as at be been before being below between both but by can could
did do does doing down during each few for from further had has have having he her here hers him his how i if in into
is it its itself just me more most my no nor not now of off on once only or other our ours out over own please same she
should so some such than that the their them then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours
get set fetch retrieve return returns call use using tool function tell give show want need like let know make
current given specified today tomorrow
"""
_STOP_WORDS = frozenset(_STOP_TEXT.split())
_PLACE_WORDS = frozenset({"city", "location", "place", "town", "country", "region", "destination", "address"})
_NAME_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|[.!?]")
_PLAIN_STRING_KEYWORDS = frozenset({"type", "description", "title", "minLength", "maxLength", "examples", "default"})


def name_words(name: str) -> set[str]:
    """The words of an identifier: ``get_weather``, ``getWeather``, ``GetWeather`` all give {get, weather}."""
    return {_singular(part.lower()) for part in _NAME_PART.findall(name)}


def significant_words(text: str) -> set[str]:
    """The words of a text that can choose a tool: lower-cased, singular, without stop words."""
    words = {_singular(word.lower().removesuffix("'s")) for word in _WORD.findall(text) if word not in ".!?"}
    return {word for word in words if word not in _STOP_WORDS and len(word) > 1}


def best_tool(tools: Sequence[tuple[str, str]], text: str) -> int | None:
    """The index of the ``(name, description)`` the text is most about, or None when it shares no significant word."""
    prompt = significant_words(text)
    best, best_score = None, 0
    for index, (name, description) in enumerate(tools):
        in_name = name_words(name) & prompt
        in_description = (significant_words(description) & prompt) - in_name
        score = 2 * len(in_name) + len(in_description)
        if score > best_score:
            best, best_score = index, score
    return best


def named_place(text: str) -> str | None:
    """The first run of capitalised words that does not open a sentence ("New York"), or None."""
    runs: list[list[str]] = []
    opening, previous_capitalised = True, False
    for word in _WORD.findall(text):
        if word in ".!?":
            opening, previous_capitalised = True, False
            continue
        capitalised = word[0].isupper() and word != "I" and word.lower() not in _STOP_WORDS
        if capitalised and not opening:
            if previous_capitalised:
                runs[-1].append(word)
            else:
                runs.append([word])
        previous_capitalised = capitalised and not opening
        opening = False
    return " ".join(runs[0]) if runs else None


def with_place(arguments: Any, parameters: Any, text: str) -> Any:
    """``arguments`` with every plain string property about a place set to the place the text names (when it fits)."""
    place = named_place(text)
    properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
    if place is None or not isinstance(arguments, dict) or not isinstance(properties, Mapping):
        return arguments
    filled = dict(arguments)
    for name, schema in properties.items():
        if name in filled and name_words(name) & _PLACE_WORDS and _fits_plain_string(schema, place):
            filled[name] = place
    return filled


def _fits_plain_string(schema: Any, value: str) -> bool:
    if not isinstance(schema, Mapping) or schema.get("type") != "string" or not set(schema) <= _PLAIN_STRING_KEYWORDS:
        return False
    low, high = schema.get("minLength", 0), schema.get("maxLength", len(value))
    return isinstance(low, int) and isinstance(high, int) and low <= len(value) <= high


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word
