"""Language-independent semantic frames: clauses, noun phrases and documents as nested tuples of ints.

Frames are plain tuples of ints so they hash fast and identically in every process (no strings, no None:
``hash(None)`` is address-based before Python 3.12), which the train/dev/test split relies on.

Noun phrase ``(noun, number, det, adj, rel)``
    noun: concept index, or ``SPEAKER`` (-1) for "I"/"we"; number: 0 singular, 1 plural;
    det: ``DEF``, ``INDEF``, a numeral 2..9, or ``ANAPHOR`` (a pronoun standing for ``noun``);
    adj: adjective index or -1; rel: 0 or a relative clause ``(role, verb, tense, neg, other_np)`` where role 0
    means the head noun is the relative clause's subject and role 1 its direct object.
Clause ``(verb, tense, neg, subj, obj, iobj, pp, sub, adv)``
    tense 0 present / 1 past; obj and iobj an NP or 0; pp 0 or ``(prep, NP)``; sub 0 or ``(conj, clause)``;
    adv 0 or a sentence adverb (``ADV_MAIN`` marks a document's main event).
"""

from __future__ import annotations

from .lexicon import ANIMAL, DITR, INTR, NOUN_CLASSES, PERSON, PLACE, SAY, THING, TR, Lexicon

SPEAKER = -1
DEF, INDEF, ANAPHOR, PRONOUN = 0, 1, -1, -2
NUMERALS = tuple(range(2, 10))
PREP_WITH, PREP_FOR, PREP_WITHOUT, PREP_IN = 0, 1, 2, 3
CONJ_BECAUSE, CONJ_WHILE, CONJ_ALTHOUGH, CONJ_THAT = 0, 1, 2, 3
ADV_TODAY, ADV_YESTERDAY, ADV_THEN, ADV_LATER, ADV_OFTEN, ADV_MAIN = 1, 2, 3, 4, 5, 6  # order matters

ZIPF_EXPONENT = 1.0

# Verb kind of a clause, one entry per 2%: 20% intransitive, 52% transitive, 18% ditransitive, 10% "say that".
CLAUSE_KINDS = [INTR] * 10 + [TR] * 26 + [DITR] * 9 + [SAY] * 5

# (number, determiner) of a noun phrase, one table entry per percent: 42% "the X", 20% "a X", 14% "the Xs",
# 9% bare plural "Xs", 15% numeral "three Xs" (2..9 uniform) -- one random draw instead of a branch cascade.
NP_SHAPES = (
    [(0, DEF)] * 42
    + [(0, INDEF)] * 20
    + [(1, DEF)] * 14
    + [(1, INDEF)] * 9
    + [(1, 2 + i % 8) for i in range(15)]
)


def _zipf_table(items: list[int]) -> list[int]:
    """A lookup table in which each item appears in proportion to its Zipf weight (rank = list position).

    Sampling is then ``table[int(r() * len(table))]``: one index instead of a bisect and a method call, which
    matters because frame generation is the hot loop. The table is large enough that even the rarest item
    keeps several entries, so the quantisation of the tail is negligible.
    """
    if not items:
        raise ValueError("empty sampler")
    weights = [1.0 / (rank + 1) ** ZIPF_EXPONENT for rank in range(len(items))]
    size = max(1 << 14, 8 * len(items) * max(1, int(sum(weights))))
    scale = size / sum(weights)
    table: list[int] = []
    carry = 0.0
    for item, weight in zip(items, weights, strict=True):
        carry += weight * scale
        count = max(1, round(carry))
        carry -= count
        table.extend([item] * count)
    return table


class FrameGenerator:
    """Draws random clauses and documents; ``max_clause_depth`` bounds relative / subordinate nesting."""

    def __init__(self, lexicon: Lexicon, max_clause_depth: int):
        self.lexicon = lexicon
        self.max_depth = max_clause_depth
        nouns = lexicon.nouns
        self.noun_cls = [n.cls for n in nouns]
        self.nouns_by_cls = {
            c: _zipf_table([i for i, n in enumerate(nouns) if n.cls == c])
            for c in NOUN_CLASSES
            if any(n.cls == c for n in nouns)
        }
        self.animate = _zipf_table([i for i, n in enumerate(nouns) if n.cls in (PERSON, ANIMAL)])
        self.persons = self.nouns_by_cls.get(PERSON, self.animate)
        verbs = lexicon.verbs
        self.verb_kind = [v.kind for v in verbs]
        self.verb_obj_classes = [
            tuple(sorted(c for c in v.obj_classes if c in self.nouns_by_cls)) for v in verbs
        ]
        self.verbs_by_kind = {
            k: _zipf_table(
                [
                    i
                    for i, v in enumerate(verbs)
                    if v.kind == k and (k in (INTR, SAY) or self.verb_obj_classes[i])
                ]
            )
            for k in (INTR, TR, DITR, SAY)
            if any(
                v.kind == k and (k in (INTR, SAY) or self.verb_obj_classes[i]) for i, v in enumerate(verbs)
            )
        }
        # Transitive verbs that accept a given class as object: used for object relative clauses.
        self.tr_by_obj_cls = {
            c: _zipf_table([i for i, v in enumerate(verbs) if v.kind == TR and c in v.obj_classes])
            for c in NOUN_CLASSES
            if any(v.kind == TR and c in v.obj_classes for v in verbs)
        }
        self.adjs = _zipf_table(list(range(len(lexicon.adjectives)))) if lexicon.adjectives else None
        # 45% of noun phrases carry an adjective: -1 fills the rest of one table, so one draw decides both.
        adjs = self.adjs or []
        self.adj_or_none = adjs + [-1] * round(len(adjs) * 0.55 / 0.45) if adjs else [-1]
        self.things = self.nouns_by_cls.get(THING)
        self.places = self.nouns_by_cls.get(PLACE)
        self.has_ditr = DITR in self.verbs_by_kind and self.things is not None
        self.has_say = SAY in self.verbs_by_kind
        if TR not in self.verbs_by_kind or INTR not in self.verbs_by_kind:
            raise ValueError("the lexicon needs transitive and intransitive verbs; increase n_lemmas")
        self.verb_tables = [self.verbs_by_kind.get(k, []) for k in (INTR, TR, DITR, SAY)]
        self.object_table = self._object_tables()

    # ---- noun phrases --------------------------------------------------------------------------------------
    # Sampling is written inline (``T[int(r() * len(T))]``) on purpose: this is the generator's hot loop.

    def np(self, r, noun: int, depth: int, allow_rel: bool = True) -> tuple:
        shapes = NP_SHAPES
        number, det = shapes[int(r() * len(shapes))]
        adjs = self.adj_or_none
        adj = adjs[int(r() * len(adjs))]
        if allow_rel and depth < self.max_depth and r() < 0.18:
            return (noun, number, det, adj, self.relative(r, noun, number, depth + 1))
        return (noun, number, det, adj, 0)

    def relative(self, r, head: int, number: int, depth: int) -> tuple:
        head_cls = self.noun_cls[head]
        tense = 1 if r() < 0.5 else 0
        neg = 1 if r() < 0.12 else 0
        if head_cls <= ANIMAL and (r() < 0.6 or head_cls not in self.tr_by_obj_cls):
            if r() < 0.4:
                verbs = self.verbs_by_kind[INTR]
                return (0, verbs[int(r() * len(verbs))], tense, neg, 0)
            verbs = self.verbs_by_kind[TR]
            verb = verbs[int(r() * len(verbs))]
            return (0, verb, tense, neg, self.np(r, self.object_noun(r, verb), depth))
        verbs = self.tr_by_obj_cls[head_cls]
        animate = self.animate
        return (
            1,
            verbs[int(r() * len(verbs))],
            tense,
            neg,
            self.np(r, animate[int(r() * len(animate))], depth),
        )

    def object_noun(self, r, verb: int) -> int:
        nouns = self.object_table[verb]
        return nouns[int(r() * len(nouns))]

    def _object_tables(self) -> list[list[int]]:
        """Per verb, one table over its allowed object classes (classes equally likely, Zipf within a class)."""
        size = max(len(t) for t in self.nouns_by_cls.values())
        resampled = {c: [t[i * len(t) // size] for i in range(size)] for c, t in self.nouns_by_cls.items()}
        by_classes: dict[tuple[int, ...], list[int]] = {}
        tables = []
        for classes in self.verb_obj_classes:
            if classes not in by_classes:
                by_classes[classes] = [n for c in classes for n in resampled[c]]
            tables.append(by_classes[classes])
        return tables

    # ---- clauses -------------------------------------------------------------------------------------------

    def clause(
        self,
        r,
        depth: int = 0,
        subj: tuple | None = None,
        subj_cls: int = PERSON,
        allow_say: bool = True,
        adv: int = -1,
    ) -> tuple:
        can_embed = depth < self.max_depth
        kind = CLAUSE_KINDS[int(r() * 50)]
        if (kind == SAY and not (can_embed and allow_say and subj_cls == PERSON and self.has_say)) or (
            kind == DITR and not self.has_ditr
        ):
            kind = TR
        verbs = self.verb_tables[kind]
        verb = verbs[int(r() * len(verbs))]
        tense = 1 if r() < 0.5 else 0
        neg = 1 if r() < 0.15 else 0
        animate = self.animate
        if subj is None:
            if r() < 0.08:
                subj = (SPEAKER, 1 if r() < 0.5 else 0, PRONOUN, -1, 0)
            else:
                nouns = self.persons if kind == SAY else animate
                subj = self.np(r, nouns[int(r() * len(nouns))], depth)
        obj = iobj = pp = sub = 0
        if kind == TR:
            obj = self.np(r, self.object_noun(r, verb), depth)
        elif kind == DITR:
            obj = self.np(r, self.object_noun(r, verb), depth, False)
            iobj = self.np(r, animate[int(r() * len(animate))], depth, False)
        if kind == SAY:
            sub = (CONJ_THAT, self.clause(r, depth + 1))
        else:
            if r() < 0.5:
                roll = r()
                if roll < 0.3 and self.places:
                    nouns = self.places
                    pp = (PREP_IN, self.np(r, nouns[int(r() * len(nouns))], depth, False))
                elif roll < 0.55:
                    pp = (PREP_WITH, self.np(r, animate[int(r() * len(animate))], depth, False))
                elif roll < 0.8 or not self.things:
                    pp = (PREP_FOR, self.np(r, animate[int(r() * len(animate))], depth, False))
                else:
                    nouns = self.things
                    pp = (PREP_WITHOUT, self.np(r, nouns[int(r() * len(nouns))], depth, False))
            if can_embed and r() < 0.35:
                sub = (int(r() * 3), self.clause(r, depth + 1))
        if adv < 0:
            adv = 0
            if depth == 0 and r() < 0.15:
                adv = 1 + int(r() * 5)  # ADV_TODAY .. ADV_OFTEN
        if adv == ADV_YESTERDAY:
            tense = 1
        return (verb, tense, neg, subj, obj, iobj, pp, sub, adv)

    # ---- documents -----------------------------------------------------------------------------------------

    def protagonist(self, r) -> tuple[int, int, int]:
        """(noun, number, adjective) of a document's main character."""
        noun = self.animate[int(r() * len(self.animate))]
        number = 1 if r() < 0.2 else 0
        adj = self.adjs[int(r() * len(self.adjs))] if self.adjs and r() < 0.6 else -1
        return noun, number, adj

    def document_sentence(self, r, protagonist: tuple[int, int, int], index: int, main_index: int) -> tuple:
        """Sentence ``index`` of a document: the first introduces the protagonist, ``main_index`` is marked."""
        noun, number, adj = protagonist
        cls = self.noun_cls[noun]
        if index == 0:
            det = INDEF if number == 0 or r() < 0.5 else NUMERALS[int(r() * 8)]
            subj = (noun, number, det, adj, 0)
            return self.clause(
                r,
                subj=subj,
                subj_cls=cls,
                allow_say=index != main_index,
                adv=ADV_MAIN if index == main_index else 0,
            )
        if index == main_index or r() < 0.5:
            subj = (noun, number, ANAPHOR, -1, 0) if r() < 0.5 else (noun, number, DEF, -1, 0)
            return self.clause(
                r,
                subj=subj,
                subj_cls=cls,
                allow_say=index != main_index,
                adv=ADV_MAIN if index == main_index else -1,
            )
        return self.clause(r)


def strip_adjuncts(np_or_zero):
    """The core of an NP for summaries: no relative clause, and pronouns never (they are resolved)."""
    if np_or_zero == 0:
        return 0
    noun, number, det, adj, _rel = np_or_zero
    return (noun, number, det, adj, 0)


def summary_clause(main: tuple, protagonist: tuple[int, int, int]) -> tuple:
    """The main event restated with the protagonist named in full and without adjuncts."""
    verb, tense, neg, _subj, obj, iobj, _pp, _sub, _adv = main
    noun, number, adj = protagonist
    return (verb, tense, neg, (noun, number, DEF, adj, 0), strip_adjuncts(obj), strip_adjuncts(iobj), 0, 0, 0)
