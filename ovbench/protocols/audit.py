"""Leakage audit: how much of a test vocabulary a training vocabulary has already seen.

Each test class gets the first level at which it meets the training vocabulary (every class of the
training protocol, names and synonyms, as the overlap rule uses):

- ``name``: its canonical name equals, after :func:`~ovbench.protocols.overlap.normalise_name`, a
  training class's name or synonym;
- ``synonym``: not its name, but one of its synonyms does;
- ``synset``: neither, but a WordNet 3.0 noun synset of its name or a synonym (all senses, NLTK's
  lemmatisation, spaces as ``_``) is a synset of a training class's name or synonym;
- ``unseen``: nothing is shared at any level: the truly unseen subset.

The name and synonym levels split :func:`~ovbench.protocols.overlap.overlap_table`'s matches, so a
class is *base* under the protocols' overlap rule exactly when its level is ``name`` or ``synonym``;
:attr:`Audit.partition_mismatches` lists the classes whose stored partition says otherwise. Audits
are cached per (test, train) class table, so evaluation can ask for the unseen classes cheaply.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

from ovbench.protocols.overlap import normalise_name, overlap_table, vocabulary_index
from ovbench.protocols.registry import get_protocol
from ovbench.protocols.schema import ClassInfo, Protocol
from ovbench.vocab.wordnet import WordNetNouns, default_wordnet

LEVELS = ("name", "synonym", "synset", "unseen")
FORMAT = "ovbench.audit/1"
LEVEL_HELP = {
    "name": "the class's name is a name or synonym of a training class",
    "synonym": "not its name, but one of its synonyms is a name or synonym of a training class",
    "synset": "no shared name or synonym, but a WordNet 3.0 noun synset of its name or a synonym is a synset "
              "of a training class's name or synonym",
    "unseen": "nothing shared at any level",
}


@dataclass(frozen=True)
class ClassAudit:
    """One test class. ``shared`` maps each level to ``{what is shared: [training class names]}``:
    normalised names at ``name`` / ``synonym``, NLTK-style synset names (``sofa.n.01``) at ``synset``."""

    id: int
    name: str
    synonyms: tuple[str, ...]
    partition: str
    level: str
    shared: Mapping[str, Mapping[str, tuple[str, ...]]]

    @property
    def rule_partition(self) -> str:
        """The partition the overlap rule gives: base iff the name or a synonym is shared."""
        return "base" if self.level in ("name", "synonym") else "novel"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "synonyms": list(self.synonyms), "partition": self.partition,
                "level": self.level,
                "shared": {level: {k: list(v) for k, v in hits.items()} for level, hits in self.shared.items()}}


@dataclass(frozen=True)
class Audit:
    """The audit of test protocol ``test`` against training protocol ``train``.

    ``compares_partitions`` is true when ``test``'s partition rule is the overlap rule against
    ``train``, so its stored partitions must equal the rule's.
    """

    test: str
    train: str
    rows: tuple[ClassAudit, ...]
    test_classes_sha256: str
    train_classes_sha256: str
    compares_partitions: bool
    wordnet: str

    def counts(self) -> dict[str, int]:
        """``classes`` and the number of classes at each level."""
        return {"classes": len(self.rows), **{level: sum(r.level == level for r in self.rows) for level in LEVELS}}

    def ids(self, level: str) -> list[int]:
        return [r.id for r in self.rows if r.level == level]

    @property
    def partition_mismatches(self) -> list[ClassAudit]:
        """Classes whose stored partition differs from the rule's (none unless ``compares_partitions``)."""
        return [r for r in self.rows if self.compares_partitions and r.partition != r.rule_partition]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "test": self.test, "train": self.train,
                "test_classes_sha256": self.test_classes_sha256, "train_classes_sha256": self.train_classes_sha256,
                "wordnet": self.wordnet, "levels": LEVEL_HELP, "counts": self.counts(),
                "partition_check": ({"rule": "base iff level is name or synonym",
                                     "mismatches": [r.id for r in self.partition_mismatches]}
                                    if self.compares_partitions else None),
                "classes": [r.to_dict() for r in self.rows]}

    def summary(self) -> str:
        """One line: the counts, and whether the stored partitions are the overlap rule's."""
        c = self.counts()
        line = (f"{self.test} vs {self.train}: {c['classes']} classes; shared by name {c['name']}, by synonym only "
                f"{c['synonym']}, by synset only {c['synset']}; unseen {c['unseen']}")
        if self.compares_partitions:
            bad = self.partition_mismatches
            line += ("; stored partitions = name or synonym shared" if not bad else
                     f"; {len(bad)} stored partition(s) differ from the overlap rule")
        return line

    def to_markdown(self) -> str:
        c = self.counts()
        lines = [f"# Leakage audit: {self.test} vs {self.train}", "",
                 f"Written by `ovbench audit --train {self.train} --test {self.test}`; {self.wordnet}. "
                 f"Training vocabulary: every class of {self.train}, names and synonyms.", "",
                 *(f"- **{level}**: {LEVEL_HELP[level]}" for level in LEVELS), "",
                 "| classes | shared by name | by synonym only | by synset only | unseen |", "|---|---|---|---|---|",
                 f"| {c['classes']} | {c['name']} | {c['synonym']} | {c['synset']} | {c['unseen']} |", ""]
        if self.compares_partitions:
            bad = self.partition_mismatches
            n_base = sum(r.partition == "base" for r in self.rows)
            lines += [f"Stored partition ({n_base} base, {len(self.rows) - n_base} novel) = name or synonym "
                      f"shared: {'yes' if not bad else 'no, classes ' + ', '.join(str(r.id) for r in bad)}.", ""]
        lines += ["| id | class | level | partition | name → training | synonym → training | synset → training |",
                  "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            cells = ["; ".join(f"{k} → {', '.join(v)}" for k, v in r.shared[level].items()) for level in LEVELS[:3]]
            lines.append(f"| {r.id} | {r.name} | {r.level} | {r.partition} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def classes_sha256(classes: Sequence[ClassInfo]) -> str:
    """SHA-256 of the canonical JSON of a class table (what an audit was computed on)."""
    text = json.dumps([c.to_dict() for c in classes], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def synset_offsets(wordnet: WordNetNouns, name: str) -> list[str]:
    """Offsets of every noun synset of ``name`` (lower-cased, spaces as ``_``, lemmatised as NLTK's morphy)."""
    return list(dict.fromkeys(o for form in wordnet.morphy(name.lower().replace(" ", "_"))
                              for o in wordnet.index[form]))


def synset_name(wordnet: WordNetNouns, offset: str) -> str:
    """NLTK's name of a noun synset: its first lemma, lower-cased, ``.n.`` and that lemma's sense number."""
    lemma = wordnet.synsets[offset][0].lower()
    return f"{lemma}.n.{wordnet.index[lemma].index(offset) + 1:02d}"


def _hits(keys: Sequence[str], index: Mapping[str, Sequence[int]],
          names: Mapping[int, str]) -> dict[str, tuple[str, ...]]:
    """Each of ``keys`` -> the names of the training classes ``index`` maps it to."""
    return {k: tuple(names[i] for i in index[k]) for k in keys}


@lru_cache(maxsize=32)
def audit_rows(test: tuple[ClassInfo, ...], train: tuple[ClassInfo, ...]) -> tuple[ClassAudit, ...]:
    """One :class:`ClassAudit` per test class against the training vocabulary ``train`` (cached per pair of tables)."""
    wordnet = default_wordnet()
    names = {c.id: c.name for c in train}
    word_index = vocabulary_index(train)
    synset_index: dict[str, list[int]] = {}
    for c in train:
        for offset in dict.fromkeys(o for n in c.names for o in synset_offsets(wordnet, n)):
            synset_index.setdefault(offset, []).append(c.id)
    rows = []
    for c, overlap in zip(test, overlap_table(test, train)):
        own = normalise_name(c.name)
        offsets = dict.fromkeys(o for n in c.names for o in synset_offsets(wordnet, n) if o in synset_index)
        shared = {"name": _hits([n for n in overlap["shared_names"] if n == own], word_index, names),
                  "synonym": _hits([n for n in overlap["shared_names"] if n != own], word_index, names),
                  "synset": {synset_name(wordnet, o): tuple(names[i] for i in synset_index[o]) for o in offsets}}
        level = next((lv for lv in LEVELS[:3] if shared[lv]), "unseen")
        rows.append(ClassAudit(c.id, c.name, c.synonyms, c.partition, level, shared))
    return tuple(rows)


def audit(test: Protocol, train: Protocol) -> Audit:
    """Audit ``test``'s classes against ``train``'s; both need their class tables (``require_classes``)."""
    test_classes, train_classes = test.require_classes(), train.require_classes()
    rule = test.partition_rule
    return Audit(test=test.id, train=train.id, rows=audit_rows(tuple(test_classes), tuple(train_classes)),
                 test_classes_sha256=classes_sha256(test_classes), train_classes_sha256=classes_sha256(train_classes),
                 compares_partitions=rule.get("kind") == "overlap" and rule.get("train_protocol") == train.id,
                 wordnet=default_wordnet().source)


def unseen_class_ids(protocol: Protocol) -> list[int] | None:
    """Ids of ``protocol``'s classes that share nothing with its training vocabulary, for protocols
    whose partition comes from the overlap rule (``None`` for the others)."""
    rule = protocol.partition_rule
    if rule.get("kind") != "overlap":
        return None
    train = get_protocol(rule["train_protocol"]).require_classes()
    return [r.id for r in audit_rows(tuple(protocol.require_classes()), tuple(train)) if r.level == "unseen"]
