"""Render semantic frames as English-like, German-like and French-like sentences.

The three renderers share one frame format (see ``frames``) and differ only in grammar:

* English: SVO everywhere, do-support for negation ("does not see"), "that" relatives, adjectives before nouns,
  recipient after "to".
* German: verb-second main clauses (an initial adverb pushes the subject behind the finite verb), verb-final
  subordinate and relative clauses, separable particles at the clause end in main clauses ("ruft ... an") but
  fused in subordinate ones ("... anruft"), the perfect with haben/sein and a clause-final participle,
  nominative/accusative/dative articles and adjective endings by gender (weak after der, mixed after ein,
  strong without article), "im" for "in dem", "kein" for negated indefinite objects, commas around clauses.
* French: adjectives after the noun agreeing in gender and number, le/la/les with elision (l', n', j', qu'),
  ne ... pas around the finite verb, "pas de" for negated indefinite objects, passé composé with avoir/être
  (participle agreement with être), à + le → au, qui/que relatives.

Hot paths cache rendered noun phrases by (noun, number, determiner, adjective, case) because Zipf-distributed
vocabulary makes the same phrases recur constantly; this is what makes generation fast in pure Python.
"""

from __future__ import annotations

from .frames import (
    ADV_LATER,
    ADV_MAIN,
    ADV_OFTEN,
    ADV_THEN,
    ADV_TODAY,
    ADV_YESTERDAY,
    ANAPHOR,
    DEF,
    INDEF,
    SPEAKER,
)
from .lexicon import P1PL, P1SG, P3PL, P3SG, F, Lexicon, fr_starts_with_vowel

# Rendered noun phrases kept per cache before it is cleared: bounds memory on long runs with big lexicons.
CACHE_LIMIT = 200_000


def _person(np: tuple) -> int:
    if np[0] == SPEAKER:
        return P1PL if np[1] else P1SG
    return P3PL if np[1] else P3SG


def _capitalise(tokens: list[str]) -> str:
    tokens[-1] = tokens[-1].rstrip(",")
    text = " ".join(tokens)
    return text[0].upper() + text[1:] + "."


# ==============================================================================================================
# English
# ==============================================================================================================

_EN_NUM = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
_EN_PREP = ("with", "for", "without", "in")
_EN_CONJ = ("because", "while", "although", "that")
_EN_ADV = {
    ADV_TODAY: "today,",
    ADV_YESTERDAY: "yesterday,",
    ADV_THEN: "then,",
    ADV_LATER: "later,",
    ADV_OFTEN: "often,",
    ADV_MAIN: "most importantly,",
}


class English:
    lang = "en"

    def __init__(self, lex: Lexicon):
        self.noun_sg = [n.en[0] for n in lex.nouns]
        self.noun_pl = [n.en[1] for n in lex.nouns]
        self.noun_sex = [n.sex for n in lex.nouns]
        self.pres = [v.en[0] for v in lex.verbs]
        self.past = [v.en[1] for v in lex.verbs]
        self.base = [v.en[2] for v in lex.verbs]
        self.adj = [a.en for a in lex.adjectives]
        self.cache: dict[tuple, str] = {}

    def np_str(self, np: tuple) -> str:
        # Phrases without a relative clause (most) are their own cache key: no key tuple to build.
        key = np if not np[4] else (*np[:4], 0)
        text = self.cache.get(key)
        if text is not None:
            return text
        if len(self.cache) > CACHE_LIMIT:
            self.cache.clear()
        noun, number, det, adj, _ = np
        if noun == SPEAKER:
            text = "we" if number else "I"
        elif det == ANAPHOR:
            text = "they" if number else ("he", "she", "it")[self.noun_sex[noun]]
        else:
            words = (self.adj[adj] + " " if adj >= 0 else "") + (
                self.noun_pl[noun] if number else self.noun_sg[noun]
            )
            if det == DEF:
                text = "the " + words
            elif det == INDEF:
                text = words if number else ("an " if words[0] in "aeiou" else "a ") + words
            else:
                text = _EN_NUM[det] + " " + words
        self.cache[key] = text
        return text

    def add_np(self, np: tuple, out: list[str]) -> None:
        out.append(self.np_str(np))
        rel = np[4]
        if rel:
            role, verb, tense, neg, other = rel
            out.append("that")
            if role == 0:
                out.append(self.verb_phrase(verb, tense, neg, P3PL if np[1] else P3SG))
                if other:
                    self.add_np(other, out)
            else:
                self.add_np(other, out)
                out.append(self.verb_phrase(verb, tense, neg, _person(other)))

    def verb_phrase(self, verb: int, tense: int, neg: int, person: int) -> str:
        if neg:
            if tense:
                return "did not " + self.base[verb]
            return ("does not " if person == P3SG else "do not ") + self.base[verb]
        return self.past[verb] if tense else self.pres[verb][person]

    def clause(self, c: tuple, out: list[str]) -> None:
        verb, tense, neg, subj, obj, iobj, pp, sub, adv = c
        if adv:
            out.append(_EN_ADV[adv])
        self.add_np(subj, out)
        out.append(self.verb_phrase(verb, tense, neg, _person(subj)))
        if obj:
            self.add_np(obj, out)
        if iobj:
            out.append("to")
            self.add_np(iobj, out)
        if pp:
            out.append(_EN_PREP[pp[0]])
            self.add_np(pp[1], out)
        if sub:
            out.append(_EN_CONJ[sub[0]])
            self.clause(sub[1], out)

    def sentence(self, c: tuple) -> str:
        out: list[str] = []
        self.clause(c, out)
        return _capitalise(out)

    def summary(self, n_events: int, c: tuple) -> str:
        out = [f"{n_events} {'event' if n_events == 1 else 'events'}: the main event is that"]
        self.clause(c, out)
        return " ".join(out) + "."


# ==============================================================================================================
# German
# ==============================================================================================================

# Index 3 is the plural column; rows are cases nominative, accusative, dative.
_DE_DEF = (("der", "die", "das", "die"), ("den", "die", "das", "die"), ("dem", "der", "dem", "den"))
_DE_EIN = (("ein", "eine", "ein"), ("einen", "eine", "ein"), ("einem", "einer", "einem"))
_DE_KEINE_PL = ("keine", "keine", "keinen")
_DE_WEAK = (("e", "e", "e", "en"), ("en", "e", "e", "en"), ("en", "en", "en", "en"))
_DE_MIXED = (("er", "e", "es"), ("en", "e", "es"), ("en", "en", "en"))
_DE_STRONG_PL = ("e", "e", "en")
_DE_REL = (("der", "die", "das", "die"), ("den", "die", "das", "die"))
_DE_PRON = ("er", "sie", "es")
_DE_NUM = {2: "zwei", 3: "drei", 4: "vier", 5: "fünf", 6: "sechs", 7: "sieben", 8: "acht", 9: "neun"}
_DE_AUX = (("habe", "hat", "haben", "haben"), ("bin", "ist", "sind", "sind"))
# (preposition, case): mit + dative, für + accusative, ohne + accusative, in (location) + dative.
_DE_PREP = (("mit", 2), ("für", 1), ("ohne", 1), ("in", 2))
_DE_CONJ = ("weil", "während", "obwohl", "dass")
_DE_ADV = {
    ADV_TODAY: "heute",
    ADV_YESTERDAY: "gestern",
    ADV_THEN: "dann",
    ADV_LATER: "später",
    ADV_OFTEN: "oft",
    ADV_MAIN: "vor allem",
}


class German:
    lang = "de"

    def __init__(self, lex: Lexicon):
        self.noun_sg = [n.de[0] for n in lex.nouns]
        self.noun_gender = [n.de[1] for n in lex.nouns]
        self.noun_pl = [n.de[2] for n in lex.nouns]
        self.noun_dat_pl = [n.de[3] for n in lex.nouns]
        self.pres = [v.de[0] for v in lex.verbs]
        self.particle = [v.de[1] for v in lex.verbs]
        self.participle = [v.de[2] for v in lex.verbs]
        self.aux = [v.de[3] for v in lex.verbs]
        self.adj = [a.de for a in lex.adjectives]
        self.caches: list[dict[tuple, str]] = [{} for _ in range(6)]  # by case * 2 + kein

    def np_str(self, np: tuple, case: int, kein: int = 0) -> str:
        cache = self.caches[case * 2 + kein]
        key = np if not np[4] else (*np[:4], 0)
        text = cache.get(key)
        if text is not None:
            return text
        if len(cache) > CACHE_LIMIT:
            cache.clear()
        noun, number, det, adj, _ = np
        if noun == SPEAKER:
            text = ("ich", "mich", "mir")[case] if not number else ("wir", "uns", "uns")[case]
        elif det == ANAPHOR:
            text = "sie" if number else _DE_PRON[self.noun_gender[noun]]
        else:
            gender = self.noun_gender[noun]
            if number == 0:
                noun_form = self.noun_sg[noun]
                if det == DEF:
                    article, ending = _DE_DEF[case][gender], _DE_WEAK[case][gender]
                else:
                    article, ending = ("k" if kein else "") + _DE_EIN[case][gender], _DE_MIXED[case][gender]
            else:
                noun_form = self.noun_dat_pl[noun] if case == 2 else self.noun_pl[noun]
                if det == DEF:
                    article, ending = _DE_DEF[case][3], "en"
                elif det == INDEF:
                    article, ending = (_DE_KEINE_PL[case], "en") if kein else ("", _DE_STRONG_PL[case])
                else:
                    article, ending = _DE_NUM[det], _DE_STRONG_PL[case]
            words = (self.adj[adj] + ending + " " if adj >= 0 else "") + noun_form
            text = article + " " + words if article else words
        cache[key] = text
        return text

    def add_np(self, np: tuple, case: int, out: list[str], kein: int = 0) -> None:
        out.append(self.np_str(np, case, kein))
        rel = np[4]
        if rel:
            role, verb, tense, neg, other = rel
            out[-1] += ","
            out.append(_DE_REL[role][3 if np[1] else self.noun_gender[np[0]]])
            if role == 0:
                person = P3PL if np[1] else P3SG
                use_kein = 0
                if other:
                    use_kein = neg and other[2] == INDEF
                    self.add_np(other, 1, out, use_kein)
            else:
                person = _person(other)
                use_kein = 0
                self.add_np(other, 0, out)
            if neg and not use_kein:
                out.append("nicht")
            out.append(self.final_cluster(verb, tense, person))
            out[-1] += ","

    def final_cluster(self, verb: int, tense: int, person: int) -> str:
        """The verb at the end of a subordinate clause: particle fused ("anruft"), or participle + auxiliary."""
        if tense:
            return self.participle[verb] + " " + _DE_AUX[self.aux[verb]][person]
        return self.particle[verb] + self.pres[verb][person]

    def clause(self, c: tuple, out: list[str], subordinate: bool = False) -> None:
        verb, tense, neg, subj, obj, iobj, pp, sub, adv = c
        person = _person(subj)
        if subordinate:
            self.add_np(subj, 0, out)
        else:
            finite = _DE_AUX[self.aux[verb]][person] if tense else self.pres[verb][person]
            if adv:
                out.append(_DE_ADV[adv])
                out.append(finite)
                self.add_np(subj, 0, out)
            else:
                self.add_np(subj, 0, out)
                out.append(finite)
        if iobj:
            self.add_np(iobj, 2, out)
        use_kein = 0
        if obj:
            use_kein = neg and obj[2] == INDEF
            self.add_np(obj, 1, out, use_kein)
        if neg and not use_kein:
            out.append("nicht")
        if pp:
            prep, case = _DE_PREP[pp[0]]
            text = self.np_str(pp[1], case)
            if prep == "in" and text.startswith("dem "):
                out.append("im " + text[4:])
            else:
                out.append(prep + " " + text)
        if subordinate:
            out.append(self.final_cluster(verb, tense, person))
        else:
            final = self.participle[verb] if tense else self.particle[verb]
            if final:
                out.append(final)
        if sub:
            if not out[-1].endswith(","):
                out[-1] += ","
            out.append(_DE_CONJ[sub[0]])
            self.clause(sub[1], out, True)

    def sentence(self, c: tuple) -> str:
        out: list[str] = []
        self.clause(c, out)
        return _capitalise(out)

    def summary(self, n_events: int, c: tuple) -> str:
        out = [f"{n_events} {'Ereignis' if n_events == 1 else 'Ereignisse'}: das Hauptereignis ist, dass"]
        self.clause(c, out, True)
        return " ".join(out).rstrip(",") + "."


# ==============================================================================================================
# French
# ==============================================================================================================

_FR_NUM = {2: "deux", 3: "trois", 4: "quatre", 5: "cinq", 6: "six", 7: "sept", 8: "huit", 9: "neuf"}
_FR_PRON = (("il", "elle"), ("ils", "elles"))
_FR_AUX = (("ai", "a", "avons", "ont"), ("suis", "est", "sommes", "sont"))
_FR_PREP = ("avec", "pour", "sans", "dans")
_FR_CONJ = ("parce que", "pendant que", "alors que", "que")
_FR_ADV = {
    ADV_TODAY: "aujourd'hui,",
    ADV_YESTERDAY: "hier,",
    ADV_THEN: "ensuite,",
    ADV_LATER: "plus tard,",
    ADV_OFTEN: "souvent,",
    ADV_MAIN: "surtout,",
}


def _fr_que(conj: str, following: str) -> str:
    """Elide "que" before a vowel: "parce qu'il", "que l'homme"."""
    if fr_starts_with_vowel(following):
        return conj[:-1] + "'" + following
    return conj + " " + following


class French:
    lang = "fr"

    def __init__(self, lex: Lexicon):
        self.noun_sg = [n.fr[0] for n in lex.nouns]
        self.noun_gender = [n.fr[1] for n in lex.nouns]
        self.noun_pl = [n.fr[2] for n in lex.nouns]
        self.pres = [v.fr[0] for v in lex.verbs]
        self.participle = [v.fr[1] for v in lex.verbs]
        self.aux = [v.fr[2] for v in lex.verbs]
        self.adj = [a.fr for a in lex.adjectives]
        self.caches: list[dict[tuple, str]] = [{}, {}]  # by negated_object

    def np_str(self, np: tuple, negated_object: int = 0) -> str:
        cache = self.caches[negated_object]
        key = np if not np[4] else (*np[:4], 0)
        text = cache.get(key)
        if text is not None:
            return text
        if len(cache) > CACHE_LIMIT:
            cache.clear()
        noun, number, det, adj, _ = np
        if noun == SPEAKER:
            text = "nous" if number else "je"
        elif det == ANAPHOR:
            text = _FR_PRON[number][self.noun_gender[noun]]
        else:
            gender = self.noun_gender[noun]
            noun_form = self.noun_pl[noun] if number else self.noun_sg[noun]
            if adj >= 0:
                noun_form += " " + self.adj[adj][gender + 2 * number]
            if det == INDEF and negated_object:
                article = "de"
            elif det == DEF:
                article = "les" if number else ("le", "la")[gender]
            elif det == INDEF:
                article = "des" if number else ("un", "une")[gender]
            else:
                article = _FR_NUM[det]
            if article in ("le", "la", "de") and fr_starts_with_vowel(noun_form):
                text = article[0] + "'" + noun_form
            else:
                text = article + " " + noun_form
        cache[key] = text
        return text

    def add_np(self, np: tuple, out: list[str], negated_object: int = 0) -> None:
        out.append(self.np_str(np, negated_object))
        rel = np[4]
        if rel:
            role, verb, tense, neg, other = rel
            if role == 0:
                out.append("qui " + self.verb_group(verb, tense, neg, P3PL if np[1] else P3SG, np))
                if other:
                    self.add_np(other, out, neg and other[2] == INDEF)
            else:
                position = len(out)
                self.add_np(other, out)
                out[position] = _fr_que("que", out[position])
                out.append(self.verb_group(verb, tense, neg, _person(other), other))

    def verb_group(self, verb: int, tense: int, neg: int, person: int, subj: tuple) -> str:
        if tense:
            aux = self.aux[verb]
            finite = _FR_AUX[aux][person]
            participle = self.participle[verb]
            if aux:  # être: the participle agrees with the subject
                if subj[0] != SPEAKER and self.noun_gender[subj[0]] == F:
                    participle += "e"
                if subj[1]:
                    participle += "s"
        else:
            finite = self.pres[verb][person]
            participle = ""
        if neg:
            finite = ("n'" if fr_starts_with_vowel(finite) else "ne ") + finite + " pas"
        return finite + " " + participle if participle else finite

    def clause(self, c: tuple, out: list[str]) -> None:
        verb, tense, neg, subj, obj, iobj, pp, sub, adv = c
        if adv:
            out.append(_FR_ADV[adv])
        group = self.verb_group(verb, tense, neg, _person(subj), subj)
        if subj[0] == SPEAKER and subj[1] == 0 and fr_starts_with_vowel(group):
            out.append("j'" + group)
        else:
            self.add_np(subj, out)
            out.append(group)
        if obj:
            self.add_np(obj, out, neg and obj[2] == INDEF)
        if iobj:
            text = self.np_str(iobj)
            if text.startswith("le "):
                out.append("au " + text[3:])
            elif text.startswith("les "):
                out.append("aux " + text[4:])
            else:
                out.append("à " + text)
        if pp:
            out.append(_FR_PREP[pp[0]] + " " + self.np_str(pp[1]))
        if sub:
            inner: list[str] = []
            self.clause(sub[1], inner)
            inner[0] = _fr_que(_FR_CONJ[sub[0]], inner[0])
            out.extend(inner)

    def sentence(self, c: tuple) -> str:
        out: list[str] = []
        self.clause(c, out)
        return _capitalise(out)

    def summary(self, n_events: int, c: tuple) -> str:
        out: list[str] = []
        self.clause(c, out)
        head = f"{n_events} {'événement' if n_events == 1 else 'événements'} : l'événement principal est"
        return head + " " + _fr_que("que", " ".join(out)) + "."


RENDERERS = {"en": English, "de": German, "fr": French}
