"""The Open ASR Leaderboard's English text rules, as data and small functions.

The leaderboard (github.com/huggingface/open_asr_leaderboard, ``normalizer/normalizer.py``,
``normalizer/english_abbreviations.py`` and ``normalizer/eval_utils.py``) scores English with
Whisper's English normaliser plus the additions below, then aligns with kaldialign's
``merge_compounds``. Whisper's part comes from maintained packages (transformers' Whisper
normaliser, the spelling map from ``whisper-normalizer``'s ``english.json``); this module holds
only what the leaderboard adds, written out as facts. ``explorer.scoring`` puts them together.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib.resources import files

# Filler words removed before anything else. Whisper removes hmm, mm, mhm, mmm, uh and um; the
# leaderboard's EnglishTextNormalizer.ignore_patterns adds the rest of this list.
FILLERS = (
    "hmm", "mm", "mhm", "mmm", "uh", "um", "ah", "aha", "ahh", "ahm", "eh", "ehehe", "em", "hm", "huh",
    "hum", "mhum", "uhm", "umm", "uhuh",
)  # fmt: skip

# Whisper expands every "'s" to " is" ("john's" -> "john is"); the leaderboard expands it only
# after these words (EnglishTextNormalizer.replacers), so a possessive stays a possessive.
IS_CONTRACTORS = ("it", "he", "she", "what", "that", "who", "here", "there", "how", "when", "where", "why", "this")

# The leaderboard's spelling map (english_spelling_normalizer) is Whisper's english.json with these
# changes: entries of Whisper's that map the wrong way round (or are not one word) are dropped, and
# these spellings are set.
SPELLINGS_DROPPED = ("cancelation", "cancelations", "travelog", "travelogs", "archeological", "flyer / flier")
SPELLINGS_SET = {
    "cancellation": "cancelation",
    "cancellations": "cancelations",
    "archaeological": "archeological",
    "travelogue": "travelog",
    "travelogues": "travelogs",
    "flyer": "flier",
    # Whisper's english.json has typos for these four ("snowplow", "archeology</span>", ...)
    "snowploughs": "snowplows",
    "archaeology": "archeology",
    "pummelled": "pummeled",
    "pummelling": "pummeling",
    # not spellings, but the leaderboard keeps them in the same map
    "etcetera": "etc",
    "ok": "okay",
    "kay": "okay",
    "mm": "hmm",
}

# Spoken two-word forms written as one word, joined after symbols are removed (so "wi-fi" and
# "Wi Fi" both become "wifi") and before numbers are read (english_compound_normalizer).
# Applied in this order.
COMPOUNDS = (
    ("et cetera", "etc"), ("al right", "alright"), ("all right", "alright"), ("how ever", "however"),
    ("wi fi", "wifi"), ("hi fi", "hifi"), ("lo fi", "lofi"), ("sci fi", "scifi"), ("e mail", "email"),
    ("e book", "ebook"), ("e commerce", "ecommerce"), ("x ray", "xray"), ("t shirt", "tshirt"),
    ("a m", "am"), ("p m", "pm"), ("o k", "okay"),
)  # fmt: skip

# Name variants mapped to one form (english_name_normalizer), word by word after the spelling map.
# The leaderboard's table, as canonical form: variants.
_NAME_VARIANTS = {
    "allen": "alan allan", "bridget": "bridgette", "charlie": "charly charley", "gary": "garry",
    "greg": "gregg", "jackie": "jacky", "joanne": "joann joane", "kelly": "kellye kelli kelley",
    "lily": "lilly", "michael": "micheal", "michelle": "michele", "molly": "mollie", "philip": "phillip",
    "sally": "sallie", "stacy": "stacey stacie", "tracy": "tracey tracie", "brett": "bret",
    "carol": "carrol carole carroll", "alison": "allison alyson", "russell": "russel",
    "douglas": "douglass", "dominic": "dominick", "rob": "robb", "chris": "kris",
    "christopher": "kristopher cristopher", "christina": "kristina", "kristin": "kristen", "carl": "karl",
    "cathy": "kathy", "catherine": "katherine kathryn catharine", "eric": "erik erick",
    "karen": "caren caryn karin", "caitlin": "katelyn kaitlyn kaitlin", "nicole": "nikole",
    "veronica": "veronika", "victor": "viktor", "victoria": "viktoria", "kevin": "kevan",
    "patrick": "patrik", "frederick": "frederik fredrick", "lucas": "lukas", "anne": "ann", "john": "jon",
    "jonathan": "johnathan jonathon", "sarah": "sara", "matthew": "mathew", "nicholas": "nicolas",
    "rachel": "rachael", "rebecca": "rebekah", "deborah": "devorah", "teresa": "theresa",
    "susanne": "suzanne", "anthony": "antony", "martin": "martyn", "dennis": "denis",
    "lawrence": "laurence", "thomas": "tomas", "toby": "tobey", "mcarthur": "macarthur",
    "mccartney": "macartney", "mccarthy": "macarthy maccarthy", "mcdonald": "macdonald", "mckay": "mackay",
    "mckenzie": "mackenzie", "mcleod": "macleod", "mclean": "maclean", "mcmillan": "macmillan",
    "mcintosh": "macintosh", "mcintyre": "macintyre", "mcnamara": "macnamara", "mcgowan": "macgowan",
    "mohammed": "mohamad mohamed mohammad muhammad muhamad muhammed mouhamed mouhamad mahomet",
    "fatima": "fatimah", "yousef": "yusuf yusef", "miriam": "myriam", "rajiv": "rajeev",
    "alfonso": "alphonso", "brian": "bryan", "jeffrey": "geoffrey jeffery", "jeff": "geoff", "neil": "neal",
    "sean": "shaun shawn", "shane": "shayne", "steven": "stephen", "tony": "toni", "lee": "leigh",
    "louis": "lewis", "mark": "marc", "megan": "meghan", "natalie": "nathalie", "robin": "robyn",
    "roger": "rodger", "lindsay": "linsey lindsey", "zachary": "zackary zachery", "zach": "zak",
    "sherry": "sheri cheri sherrie", "terry": "terri", "laurie": "lori", "jamie": "jaime",
    "jason": "jayson", "leslie": "lesley", "linda": "lynda", "lynn": "lynne", "gail": "gayle",
    "ronda": "rhonda", "ivonne": "yvonne", "stuart": "stewart", "walter": "walther", "simon": "symon",
    "colin": "collin", "dylan": "dillon", "aaron": "aron", "arthur": "artur", "henry": "henri",
    "joseph": "josef", "peter": "pieter",
}  # fmt: skip
NAMES = {variant: name for name, variants in _NAME_VARIANTS.items() for variant in variants.split()}


@lru_cache(maxsize=None)
def spellings() -> dict[str, str]:
    """British -> American spellings: Whisper's english.json (as the whisper-normalizer package
    ships it) with the leaderboard's changes above."""
    with files("whisper_normalizer").joinpath("normalizers/english.json").open(encoding="utf-8") as f:
        mapping = json.load(f)
    for word in SPELLINGS_DROPPED:
        mapping.pop(word, None)
    mapping.update(SPELLINGS_SET)
    return mapping


_COMPOUND_PATTERNS = tuple((re.compile(r"\b" + r"\s+".join(spoken.split()) + r"\b"), joined) for spoken, joined in COMPOUNDS)


def join_compounds(text: str) -> str:
    for pattern, joined in _COMPOUND_PATTERNS:
        text = pattern.sub(joined, text)
    return text


def map_words(text: str, mapping: dict[str, str]) -> str:
    return " ".join(mapping.get(word, word) for word in text.split())


def collapse_letters(text: str) -> str:
    """Runs of one-character words (letters or digits) become one word: "b b c" -> "bbc",
    "5 5" -> "55" (as "five five" is read as 55), "5 g" -> "5g". A run holding "a" or "i" (which
    are words of their own) needs three or more; any other run two or more
    (EnglishAcronymNormalizer)."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if len(run) >= (3 if ("a" in run or "i" in run) else 2):
            out.append("".join(run))
        else:
            out.extend(run)
        run.clear()

    for word in text.split():
        if len(word) == 1 and word.isalnum():
            run.append(word)
        else:
            flush()
            out.append(word)
    flush()
    return " ".join(out)
