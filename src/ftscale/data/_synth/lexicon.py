"""Shared concept inventory and its per-language word forms: a core of real words plus generated pseudo-words.

Every concept (noun, verb, adjective) exists in all three languages; the languages differ in the forms, the
grammatical gender and the inflection classes. Pseudo-words are built from language-specific syllables so
each language keeps a recognisable "look" (German capitalised nouns with -ung/-chen endings and umlauts,
French -tion/-eau/-er words, English short Germanic-looking stems), and their gender / plural class follows
from their ending where the real language does that too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Noun classes drive selection restrictions (who can read what, where things happen).
PERSON, ANIMAL, THING, PLACE = 0, 1, 2, 3
NOUN_CLASSES = (PERSON, ANIMAL, THING, PLACE)
ANIMATE = frozenset({PERSON, ANIMAL})

# Verb kinds: intransitive, transitive, ditransitive (object + recipient), clause-taking ("say that ...").
INTR, TR, DITR, SAY = 0, 1, 2, 3

# Grammatical gender codes (French uses only M and F).
M, F, N = 0, 1, 2

# Person/number slots of finite verbs: 1sg (I), 3sg, 1pl (we), 3pl.
P1SG, P3SG, P1PL, P3PL = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Noun:
    cls: int
    sex: int  # natural gender for English pronouns: M, F, or N ("it")
    en: tuple[str, str]  # singular, plural
    de: tuple[str, int, str, str]  # singular, gender, plural, dative plural
    fr: tuple[str, int, str]  # singular, gender, plural


@dataclass(frozen=True, slots=True)
class Verb:
    kind: int
    obj_classes: frozenset[int]  # classes allowed as direct object (TR: object; DITR: the thing given)
    en: tuple[tuple[str, str, str, str], str, str]  # present by person, past, base (for do-support)
    de: tuple[
        tuple[str, str, str, str], str, str, int, str
    ]  # present, particle, participle, aux (0 haben/1 sein), infinitive
    fr: tuple[
        tuple[str, str, str, str], str, int, str
    ]  # present, participle, aux (0 avoir/1 être), infinitive


@dataclass(frozen=True, slots=True)
class Adjective:
    en: str
    de: str  # stem; endings are added by case/gender/declension
    fr: tuple[str, str, str, str]  # m sg, f sg, m pl, f pl


# --------------------------------------------------------------------------------------------------------------
# Core real words. Order matters: the first entries are the most frequent (Zipf rank) and survive small lexicons,
# so they cycle through the classes / kinds that selection restrictions need.
# --------------------------------------------------------------------------------------------------------------

# (class, sex, en sg, en pl, de sg, de gender, de pl, fr sg, fr gender, fr pl)
_CORE_NOUNS = [
    (PERSON, M, "man", "men", "Mann", M, "Männer", "homme", M, "hommes"),
    (ANIMAL, N, "dog", "dogs", "Hund", M, "Hunde", "chien", M, "chiens"),
    (THING, N, "book", "books", "Buch", N, "Bücher", "livre", M, "livres"),
    (PLACE, N, "house", "houses", "Haus", N, "Häuser", "maison", F, "maisons"),
    (PERSON, F, "woman", "women", "Frau", F, "Frauen", "femme", F, "femmes"),
    (ANIMAL, N, "cat", "cats", "Katze", F, "Katzen", "chat", M, "chats"),
    (THING, N, "car", "cars", "Auto", N, "Autos", "voiture", F, "voitures"),
    (PLACE, N, "city", "cities", "Stadt", F, "Städte", "ville", F, "villes"),
    (PERSON, F, "girl", "girls", "Mädchen", N, "Mädchen", "fille", F, "filles"),
    (THING, N, "letter", "letters", "Brief", M, "Briefe", "lettre", F, "lettres"),
    (ANIMAL, N, "horse", "horses", "Pferd", N, "Pferde", "cheval", M, "chevaux"),
    (PLACE, N, "school", "schools", "Schule", F, "Schulen", "école", F, "écoles"),
    (PERSON, M, "son", "sons", "Sohn", M, "Söhne", "fils", M, "fils"),
    (THING, N, "apple", "apples", "Apfel", M, "Äpfel", "pomme", F, "pommes"),
    (ANIMAL, N, "bird", "birds", "Vogel", M, "Vögel", "oiseau", M, "oiseaux"),
    (PLACE, N, "garden", "gardens", "Garten", M, "Gärten", "jardin", M, "jardins"),
    (PERSON, M, "teacher", "teachers", "Lehrer", M, "Lehrer", "professeur", M, "professeurs"),
    (THING, N, "key", "keys", "Schlüssel", M, "Schlüssel", "clé", F, "clés"),
    (ANIMAL, N, "mouse", "mice", "Maus", F, "Mäuse", "souris", F, "souris"),
    (PLACE, N, "forest", "forests", "Wald", M, "Wälder", "forêt", F, "forêts"),
    (PERSON, M, "friend", "friends", "Freund", M, "Freunde", "ami", M, "amis"),
    (THING, N, "picture", "pictures", "Bild", N, "Bilder", "image", F, "images"),
    (ANIMAL, N, "cow", "cows", "Kuh", F, "Kühe", "vache", F, "vaches"),
    (PLACE, N, "village", "villages", "Dorf", N, "Dörfer", "village", M, "villages"),
    (PERSON, M, "king", "kings", "König", M, "Könige", "roi", M, "rois"),
    (THING, N, "table", "tables", "Tisch", M, "Tische", "table", F, "tables"),
    (PERSON, F, "queen", "queens", "Königin", F, "Königinnen", "reine", F, "reines"),
    (THING, N, "flower", "flowers", "Blume", F, "Blumen", "fleur", F, "fleurs"),
    (PERSON, M, "doctor", "doctors", "Arzt", M, "Ärzte", "médecin", M, "médecins"),
    (THING, N, "newspaper", "newspapers", "Zeitung", F, "Zeitungen", "journal", M, "journaux"),
    (PERSON, M, "farmer", "farmers", "Bauer", M, "Bauern", "paysan", M, "paysans"),
    (THING, N, "bread", "breads", "Brot", N, "Brote", "pain", M, "pains"),
    (THING, N, "ball", "balls", "Ball", M, "Bälle", "balle", F, "balles"),
]

_ALL = frozenset(NOUN_CLASSES)
_THINGS = frozenset({THING})
# (kind, object classes, en (1sg, 3sg, past, base), de (1sg, 3sg, pl, particle, participle, aux, inf),
#  fr (1sg, 3sg, 1pl, 3pl, participle, aux, inf))
_CORE_VERBS = [
    (
        TR,
        _ALL,
        ("see", "sees", "saw"),
        ("sehe", "sieht", "sehen", "", "gesehen", 0, "sehen"),
        ("vois", "voit", "voyons", "voient", "vu", 0, "voir"),
    ),
    (
        INTR,
        _ALL,
        ("sleep", "sleeps", "slept"),
        ("schlafe", "schläft", "schlafen", "", "geschlafen", 0, "schlafen"),
        ("dors", "dort", "dormons", "dorment", "dormi", 0, "dormir"),
    ),
    (
        SAY,
        _ALL,
        ("say", "says", "said"),
        ("sage", "sagt", "sagen", "", "gesagt", 0, "sagen"),
        ("dis", "dit", "disons", "disent", "dit", 0, "dire"),
    ),
    (
        DITR,
        _THINGS,
        ("give", "gives", "gave"),
        ("gebe", "gibt", "geben", "", "gegeben", 0, "geben"),
        ("donne", "donne", "donnons", "donnent", "donné", 0, "donner"),
    ),
    (
        TR,
        frozenset({PERSON}),
        ("call", "calls", "called"),
        ("rufe", "ruft", "rufen", "an", "angerufen", 0, "anrufen"),
        ("appelle", "appelle", "appelons", "appellent", "appelé", 0, "appeler"),
    ),
    (
        INTR,
        _ALL,
        ("arrive", "arrives", "arrived"),
        ("komme", "kommt", "kommen", "an", "angekommen", 1, "ankommen"),
        ("arrive", "arrive", "arrivons", "arrivent", "arrivé", 1, "arriver"),
    ),
    (
        TR,
        frozenset({THING, ANIMAL}),
        ("find", "finds", "found"),
        ("finde", "findet", "finden", "", "gefunden", 0, "finden"),
        ("trouve", "trouve", "trouvons", "trouvent", "trouvé", 0, "trouver"),
    ),
    (
        TR,
        _THINGS,
        ("read", "reads", "read"),
        ("lese", "liest", "lesen", "", "gelesen", 0, "lesen"),
        ("lis", "lit", "lisons", "lisent", "lu", 0, "lire"),
    ),
    (
        TR,
        frozenset({PERSON, PLACE}),
        ("visit", "visits", "visited"),
        ("besuche", "besucht", "besuchen", "", "besucht", 0, "besuchen"),
        ("visite", "visite", "visitons", "visitent", "visité", 0, "visiter"),
    ),
    (
        DITR,
        _THINGS,
        ("show", "shows", "showed"),
        ("zeige", "zeigt", "zeigen", "", "gezeigt", 0, "zeigen"),
        ("montre", "montre", "montrons", "montrent", "montré", 0, "montrer"),
    ),
    (
        TR,
        frozenset({THING, ANIMAL}),
        ("buy", "buys", "bought"),
        ("kaufe", "kauft", "kaufen", "", "gekauft", 0, "kaufen"),
        ("achète", "achète", "achetons", "achètent", "acheté", 0, "acheter"),
    ),
    (
        INTR,
        _ALL,
        ("laugh", "laughs", "laughed"),
        ("lache", "lacht", "lachen", "", "gelacht", 0, "lachen"),
        ("ris", "rit", "rions", "rient", "ri", 0, "rire"),
    ),
    (
        SAY,
        _ALL,
        ("know", "knows", "knew"),
        ("weiß", "weiß", "wissen", "", "gewusst", 0, "wissen"),
        ("sais", "sait", "savons", "savent", "su", 0, "savoir"),
    ),
    (
        TR,
        _ALL,
        ("love", "loves", "loved"),
        ("liebe", "liebt", "lieben", "", "geliebt", 0, "lieben"),
        ("aime", "aime", "aimons", "aiment", "aimé", 0, "aimer"),
    ),
    (
        TR,
        frozenset({THING, PLACE}),
        ("open", "opens", "opened"),
        ("öffne", "öffnet", "öffnen", "", "geöffnet", 0, "öffnen"),
        ("ouvre", "ouvre", "ouvrons", "ouvrent", "ouvert", 0, "ouvrir"),
    ),
    (
        INTR,
        _ALL,
        ("wait", "waits", "waited"),
        ("warte", "wartet", "warten", "", "gewartet", 0, "warten"),
        ("attends", "attend", "attendons", "attendent", "attendu", 0, "attendre"),
    ),
    (
        DITR,
        _THINGS,
        ("send", "sends", "sent"),
        ("schicke", "schickt", "schicken", "", "geschickt", 0, "schicken"),
        ("envoie", "envoie", "envoyons", "envoient", "envoyé", 0, "envoyer"),
    ),
    (
        TR,
        _THINGS,
        ("pick up", "picks up", "picked up"),
        ("hebe", "hebt", "heben", "auf", "aufgehoben", 0, "aufheben"),
        ("ramasse", "ramasse", "ramassons", "ramassent", "ramassé", 0, "ramasser"),
    ),
    (
        INTR,
        _ALL,
        ("run", "runs", "ran"),
        ("laufe", "läuft", "laufen", "", "gelaufen", 1, "laufen"),
        ("cours", "court", "courons", "courent", "couru", 0, "courir"),
    ),
    (
        SAY,
        _ALL,
        ("think", "thinks", "thought"),
        ("glaube", "glaubt", "glauben", "", "geglaubt", 0, "glauben"),
        ("pense", "pense", "pensons", "pensent", "pensé", 0, "penser"),
    ),
    (
        DITR,
        _THINGS,
        ("bring", "brings", "brought"),
        ("bringe", "bringt", "bringen", "", "gebracht", 0, "bringen"),
        ("apporte", "apporte", "apportons", "apportent", "apporté", 0, "apporter"),
    ),
    (
        INTR,
        _ALL,
        ("play", "plays", "played"),
        ("spiele", "spielt", "spielen", "", "gespielt", 0, "spielen"),
        ("joue", "joue", "jouons", "jouent", "joué", 0, "jouer"),
    ),
]

# (en, de stem, fr m sg, fr f sg)  -- French plural adds -s unless the form already ends in s/x.
_CORE_ADJECTIVES = [
    ("red", "rot", "rouge", "rouge"),
    ("tired", "müd", "fatigué", "fatiguée"),
    ("black", "schwarz", "noir", "noire"),
    ("happy", "froh", "content", "contente"),
    ("green", "grün", "vert", "verte"),
    ("sad", "traurig", "triste", "triste"),
    ("rich", "reich", "riche", "riche"),
    ("blue", "blau", "bleu", "bleue"),
    ("strong", "stark", "fort", "forte"),
    ("heavy", "schwer", "lourd", "lourde"),
    ("cold", "kalt", "froid", "froide"),
    ("round", "rund", "rond", "ronde"),
    ("clever", "klug", "intelligent", "intelligente"),
    ("famous", "berühmt", "célèbre", "célèbre"),
    ("empty", "leer", "vide", "vide"),
    ("quiet", "still", "calme", "calme"),
]

# Function words that pseudo-words must never collide with.
_RESERVED = {
    "en": {
        "the",
        "a",
        "an",
        "that",
        "because",
        "while",
        "although",
        "not",
        "do",
        "does",
        "did",
        "to",
        "with",
        "for",
        "without",
        "in",
        "i",
        "we",
        "he",
        "she",
        "it",
        "they",
        "is",
        "events",
        "event",
        "main",
    },
    "de": {
        "der",
        "die",
        "das",
        "den",
        "dem",
        "des",
        "ein",
        "eine",
        "einen",
        "einem",
        "einer",
        "kein",
        "keine",
        "dass",
        "weil",
        "während",
        "obwohl",
        "nicht",
        "mit",
        "für",
        "ohne",
        "in",
        "im",
        "ich",
        "wir",
        "er",
        "sie",
        "es",
        "hat",
        "ist",
        "sind",
        "haben",
        "bin",
        "habe",
    },
    "fr": {
        "le",
        "la",
        "les",
        "un",
        "une",
        "des",
        "de",
        "que",
        "qui",
        "parce",
        "pendant",
        "alors",
        "ne",
        "pas",
        "avec",
        "pour",
        "sans",
        "dans",
        "je",
        "nous",
        "il",
        "elle",
        "ils",
        "elles",
        "a",
        "ai",
        "est",
        "sont",
        "au",
        "aux",
        "à",
    },
}


# --------------------------------------------------------------------------------------------------------------
# Pseudo-word phonotactics per language.
# --------------------------------------------------------------------------------------------------------------

_EN_ONSETS = [
    "b",
    "bl",
    "br",
    "c",
    "cl",
    "cr",
    "d",
    "dr",
    "f",
    "fl",
    "fr",
    "g",
    "gl",
    "gr",
    "h",
    "j",
    "l",
    "m",
    "n",
    "p",
    "pl",
    "pr",
    "r",
    "s",
    "sl",
    "sn",
    "sp",
    "st",
    "t",
    "tr",
    "v",
    "w",
    "",
    "sh",
    "th",
]
_EN_VOWELS = ["a", "e", "i", "o", "u", "ea", "oo", "ai", "o", "a", "i"]
_EN_CODAS = ["", "n", "t", "m", "ck", "nd", "st", "rn", "ll", "sh", "p", "g", "nk", "rd"]

_DE_ONSETS = [
    "b",
    "br",
    "d",
    "f",
    "fl",
    "g",
    "gr",
    "h",
    "k",
    "kl",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "pf",
    "r",
    "s",
    "sch",
    "schl",
    "schw",
    "st",
    "t",
    "tr",
    "w",
    "z",
    "zw",
    "sp",
]
_DE_VOWELS = ["a", "e", "i", "o", "u", "ä", "ö", "ü", "au", "ei", "ie", "a", "e", "o"]
_DE_CODAS = ["", "n", "l", "r", "ch", "cht", "ng", "nd", "rt", "ck", "tz", "m", "ft", "lk"]

_FR_ONSETS = [
    "b",
    "br",
    "c",
    "ch",
    "d",
    "f",
    "fr",
    "g",
    "gr",
    "j",
    "l",
    "m",
    "n",
    "p",
    "pl",
    "r",
    "s",
    "t",
    "tr",
    "v",
    "",
    "",
    "cl",
]
_FR_VOWELS = ["a", "e", "i", "o", "ou", "é", "eu", "au", "oi", "an", "on", "in", "a", "i"]
_FR_CODAS = ["", "", "r", "l", "n", "s"]

_FR_VOWEL_START = tuple("aeiouéèêâîôûh")


# Common real function words of each language, also kept out of the pseudo-word inventory.
_RESERVED["en"] |= {
    "and",
    "or",
    "of",
    "on",
    "at",
    "by",
    "so",
    "are",
    "was",
    "be",
    "no",
    "yes",
    "you",
    "me",
    "him",
    "her",
    "us",
    "them",
    "his",
    "its",
    "our",
    "can",
    "will",
    "has",
    "had",
    "den",
    "die",
    "das",
}
_RESERVED["de"] |= {
    "und",
    "oder",
    "zu",
    "an",
    "auf",
    "aus",
    "man",
    "wo",
    "was",
    "wer",
    "so",
    "um",
    "am",
    "vom",
    "zum",
    "the",
    "and",
    "vor",
    "allem",
    "dann",
    "oft",
    "heute",
    "gestern",
}
_RESERVED["fr"] |= {
    "vous",
    "tu",
    "on",
    "en",
    "et",
    "ou",
    "si",
    "se",
    "ce",
    "ces",
    "mon",
    "ma",
    "son",
    "sa",
    "du",
    "qu",
    "hier",
    "ensuite",
    "souvent",
    "surtout",
    "plus",
    "tard",
    "bien",
    "même",
}


def fr_starts_with_vowel(word: str) -> bool:
    return word.startswith(_FR_VOWEL_START)


def _syllables(rng: random.Random, onsets, vowels, codas, n: int) -> str:
    parts = []
    for i in range(n):
        # Word-internal codas are rarer, which keeps the words pronounceable.
        coda = rng.choice(codas) if (i == n - 1 or rng.random() < 0.3) else ""
        parts.append(rng.choice(onsets) + rng.choice(vowels) + coda)
    return "".join(parts)


def _en_plural(sg: str) -> str:
    if sg.endswith(("s", "x", "ch", "sh")):
        return sg + "es"
    if sg.endswith("y") and len(sg) > 1 and sg[-2] not in "aeiou":
        return sg[:-1] + "ies"
    return sg + "s"


def _en_third(base: str) -> str:
    if base.endswith(("s", "x", "ch", "sh", "o")):
        return base + "es"
    if base.endswith("y") and base[-2] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


def _en_past(base: str) -> str:
    if base.endswith("e"):
        return base + "d"
    if base.endswith("y") and base[-2] not in "aeiou":
        return base[:-1] + "ied"
    return base + "ed"


def _de_dative_plural(pl: str) -> str:
    return pl if pl.endswith(("n", "s")) else pl + "n"


_UMLAUT = {"a": "ä", "o": "ö", "u": "ü", "A": "Ä", "O": "Ö", "U": "Ü"}


def _de_umlaut_last(word: str) -> str:
    for i in range(len(word) - 1, -1, -1):
        ch = word[i]
        if ch in _UMLAUT and not (
            ch == "u" and i > 0 and word[i - 1] in "ae"
        ):  # leave diphthongs au/eu alone
            return word[:i] + _UMLAUT[ch] + word[i + 1 :]
    return word


def _de_noun(rng: random.Random, stem: str) -> tuple[str, int, str]:
    """German singular, gender, plural: gender and plural class follow the suffix, as in the real language."""
    stem = stem.capitalize()
    roll = rng.random()
    if roll < 0.12:
        return stem + "ung", F, stem + "ungen"
    if roll < 0.20:
        return stem + "chen", N, stem + "chen"
    if roll < 0.30:
        return stem + "heit", F, stem + "heiten"
    if roll < 0.40:
        return stem + "er", M, stem + "er"
    if roll < 0.52:
        return stem + "e", F, stem + "en"
    if roll < 0.60:
        return stem + "ling", M, stem + "linge"
    gender = rng.choice((M, M, F, N))
    if gender == F:
        return stem, F, stem + ("en" if not stem.endswith("e") else "n")
    if gender == N:
        return stem, N, _de_umlaut_last(stem) + "er" if rng.random() < 0.5 else stem + "e"
    return stem, M, stem + "e" if rng.random() < 0.7 else _de_umlaut_last(stem) + "e"


def _fr_noun(rng: random.Random, stem: str) -> tuple[str, int, str]:
    roll = rng.random()
    if roll < 0.12:
        sg, g = stem + "tion", F
    elif roll < 0.22:
        sg, g = stem + "ette", F
    elif roll < 0.32:
        sg, g = stem + "ment", M
    elif roll < 0.40:
        sg, g = stem + "eau", M
    elif roll < 0.50:
        sg, g = stem + "age", M
    elif roll < 0.58:
        sg, g = stem + "ure", F
    else:
        sg, g = stem, rng.choice((M, F))
    if sg.endswith(("s", "x", "z")):
        pl = sg
    elif sg.endswith("eau"):
        pl = sg + "x"
    else:
        pl = sg + "s"
    return sg, g, pl


def _fr_adj(stem: str) -> tuple[str, str, str, str]:
    m = stem
    f = stem if stem.endswith("e") else stem + "e"
    mpl = m if m.endswith(("s", "x")) else m + "s"
    return m, f, mpl, f + "s"


def _de_weak_present(stem: str) -> tuple[str, str, str]:
    third = stem + ("et" if stem.endswith(("t", "d")) else "t")
    return stem + "e", third, stem + "en"


def _fr_er_present(stem: str) -> tuple[str, str, str, str]:
    nous = stem + ("e" if stem.endswith("g") else "") + "ons"
    return stem + "e", stem + "e", nous, stem + "ent"


_DE_SEPARABLE = ["an", "auf", "aus", "ein", "mit", "ab", "vor", "zu", "weg"]
_DE_INSEPARABLE = ["be", "ver", "er", "ent"]


@dataclass(frozen=True, slots=True)
class Lexicon:
    nouns: tuple[Noun, ...]
    verbs: tuple[Verb, ...]
    adjectives: tuple[Adjective, ...]

    def lemmas(self, lang: str) -> dict[str, dict]:
        """Lemma -> {pos, concept, ...} for one language (nouns by singular, verbs by infinitive)."""
        out: dict[str, dict] = {}
        for i, noun in enumerate(self.nouns):
            if lang == "en":
                out[noun.en[0]] = {"pos": "noun", "concept": i, "plural": noun.en[1]}
            elif lang == "de":
                out[noun.de[0]] = {
                    "pos": "noun",
                    "concept": i,
                    "gender": "mfn"[noun.de[1]],
                    "plural": noun.de[2],
                }
            else:
                out[noun.fr[0]] = {
                    "pos": "noun",
                    "concept": i,
                    "gender": "mf"[noun.fr[1]],
                    "plural": noun.fr[2],
                }
        for i, verb in enumerate(self.verbs):
            if lang == "en":
                lemma = verb.en[2]
            elif lang == "de":
                lemma = verb.de[4]
            else:
                lemma = verb.fr[3]
            out[lemma] = {"pos": "verb", "concept": i, "kind": ("intr", "tr", "ditr", "say")[verb.kind]}
        for i, adj in enumerate(self.adjectives):
            lemma = adj.en if lang == "en" else adj.de if lang == "de" else adj.fr[0]
            out[lemma] = {"pos": "adjective", "concept": i}
        return out


def build_lexicon(seed: int, n_lemmas: int) -> Lexicon:
    """Half nouns, a quarter verbs, a quarter adjectives; core real words first, then pseudo-words."""
    rng = random.Random(f"ftscale-synthetic-lexicon:{seed}")
    n_nouns = n_lemmas // 2
    n_verbs = n_lemmas // 4
    n_adjs = n_lemmas - n_nouns - n_verbs
    used = {lang: set(words) for lang, words in _RESERVED.items()}

    def fresh(lang: str, make) -> str:
        for _ in range(1000):
            word = make()
            key = word.lower()
            if key not in used[lang] and len(word) >= 3:
                used[lang].add(key)
                return word
        raise RuntimeError(f"cannot generate a new {lang} pseudo-word; the syllable inventory is too small")

    # Reserve every core word first, so no pseudo-word can collide with a real word of another part of speech.
    for row in _CORE_NOUNS:
        used["en"].update((row[2], row[3]))
        used["de"].update((row[4].lower(), row[6].lower()))
        used["fr"].update((row[7], row[9]))
    for _kind, _objs, en, de, fr in _CORE_VERBS:
        used["en"].update(w.split()[0] for w in en)
        used["de"].update(w.lower() for w in (*de[:3], de[4], de[6]))
        used["fr"].update((*fr[:5], fr[6]))
    for en, de, fr_m, fr_f in _CORE_ADJECTIVES:
        used["en"].add(en)
        used["de"].add(de)
        used["fr"].update((fr_m, fr_f))

    # Final lemmas per language: a generated entry whose lemma already exists is drawn again, so every
    # language has exactly n_lemmas distinct lemmas.
    lemma_seen: dict[str, set[str]] = {"en": set(), "de": set(), "fr": set()}

    def claim(en_lemma: str, de_lemma: str, fr_lemma: str) -> bool:
        if en_lemma in lemma_seen["en"] or de_lemma in lemma_seen["de"] or fr_lemma in lemma_seen["fr"]:
            return False
        lemma_seen["en"].add(en_lemma)
        lemma_seen["de"].add(de_lemma)
        lemma_seen["fr"].add(fr_lemma)
        return True

    nouns: list[Noun] = []
    for cls, sex, en_sg, en_pl, de_sg, de_g, de_pl, fr_sg, fr_g, fr_pl in _CORE_NOUNS[:n_nouns]:
        for lang, w in (("en", en_sg), ("de", de_sg), ("fr", fr_sg)):
            used[lang].add(w.lower())
        claim(en_sg, de_sg, fr_sg)
        nouns.append(
            Noun(
                cls, sex, (en_sg, en_pl), (de_sg, de_g, de_pl, _de_dative_plural(de_pl)), (fr_sg, fr_g, fr_pl)
            )
        )
    class_weights = (PERSON, PERSON, ANIMAL, ANIMAL, THING, THING, THING, THING, PLACE, PLACE)
    while len(nouns) < n_nouns:
        cls = rng.choice(class_weights)
        en = fresh("en", lambda: _syllables(rng, _EN_ONSETS, _EN_VOWELS, _EN_CODAS, rng.choice((1, 2, 2))))
        de_stem = fresh("de", lambda: _syllables(rng, _DE_ONSETS, _DE_VOWELS, _DE_CODAS, rng.choice((1, 2))))
        de_sg, de_g, de_pl = _de_noun(rng, de_stem)
        used["de"].add(de_sg.lower())
        fr_stem = fresh("fr", lambda: _syllables(rng, _FR_ONSETS, _FR_VOWELS, _FR_CODAS, rng.choice((1, 2))))
        fr_sg, fr_g, fr_pl = _fr_noun(rng, fr_stem)
        used["fr"].add(fr_sg.lower())
        if cls == PERSON:
            # Person nouns: natural gender = grammatical gender in German and French, as for most real ones.
            sex = rng.choice((M, F))
            if de_g != sex and de_g != N:
                de_g = sex
            fr_g = sex
        else:
            sex = N
        if not claim(en, de_sg, fr_sg):
            continue
        nouns.append(
            Noun(
                cls,
                sex,
                (en, _en_plural(en)),
                (de_sg, de_g, de_pl, _de_dative_plural(de_pl)),
                (fr_sg, fr_g, fr_pl),
            )
        )

    verbs: list[Verb] = []
    for kind, objs, en, de, fr in _CORE_VERBS[:n_verbs]:
        used["en"].add(en[0])
        used["de"].add(de[6])
        used["fr"].add(fr[6])
        claim(en[0], de[6], fr[6])
        verbs.append(
            Verb(
                kind,
                objs,
                ((en[0], en[1], en[0], en[0]), en[2], en[0]),
                ((de[0], de[1], de[2], de[2]), de[3], de[4], de[5], de[6]),
                ((fr[0], fr[1], fr[2], fr[3]), fr[4], fr[5], fr[6]),
            )
        )
    kinds = (INTR, INTR, INTR, TR, TR, TR, TR, TR, DITR, SAY)
    while len(verbs) < n_verbs:
        kind = rng.choice(kinds)
        if kind == TR:
            objs = frozenset(rng.sample(NOUN_CLASSES, rng.choice((1, 2, 2, 3))))
        else:
            objs = _THINGS if kind == DITR else _ALL
        en_base = fresh(
            "en", lambda: _syllables(rng, _EN_ONSETS, _EN_VOWELS, _EN_CODAS, rng.choice((1, 1, 2)))
        )
        de_stem = fresh(
            "de", lambda: _syllables(rng, _DE_ONSETS, _DE_VOWELS, _DE_CODAS[1:], rng.choice((1, 2)))
        )
        first, third, plural = _de_weak_present(de_stem)
        roll = rng.random()
        participle_core = de_stem + ("et" if de_stem.endswith(("t", "d")) else "t")
        if roll < 0.25:
            particle = rng.choice(_DE_SEPARABLE)
            participle = particle + "ge" + participle_core
            infinitive = particle + de_stem + "en"
        elif roll < 0.35:
            prefix = rng.choice(_DE_INSEPARABLE)
            first, third, plural = prefix + first, prefix + third, prefix + plural
            particle, participle, infinitive = "", prefix + participle_core, prefix + de_stem + "en"
        else:
            particle, participle, infinitive = "", "ge" + participle_core, de_stem + "en"
        used["de"].add(infinitive)
        de_aux = 1 if kind == INTR and rng.random() < 0.25 else 0
        fr_stem = fresh(
            "fr",
            lambda: _syllables(
                rng, _FR_ONSETS, _FR_VOWELS, ["", "r", "l", "n", "ss", "ch", "t"], rng.choice((1, 2))
            ).rstrip("eé"),
        )
        fr_aux = 1 if kind == INTR and rng.random() < 0.2 else 0
        if not claim(en_base, infinitive, fr_stem + "er"):
            continue
        verbs.append(
            Verb(
                kind,
                objs,
                ((en_base, _en_third(en_base), en_base, en_base), _en_past(en_base), en_base),
                ((first, third, plural, plural), particle, participle, de_aux, infinitive),
                (_fr_er_present(fr_stem), fr_stem + "é", fr_aux, fr_stem + "er"),
            )
        )

    adjectives: list[Adjective] = []
    for en, de, fr_m, fr_f in _CORE_ADJECTIVES[:n_adjs]:
        used["en"].add(en)
        used["de"].add(de)
        used["fr"].add(fr_m)
        plural_m = fr_m if fr_m.endswith(("s", "x")) else fr_m + "s"
        claim(en, de, fr_m)
        adjectives.append(Adjective(en, de, (fr_m, fr_f, plural_m, fr_f + "s")))
    en_suffixes = ["", "", "", "y", "ish", "ful"]
    de_suffixes = ["", "", "ig", "lich", "isch", "bar", "sam"]
    fr_suffixes = ["", "", "al", "eux", "ique", "if"]
    while len(adjectives) < n_adjs:
        en = fresh(
            "en",
            lambda: (
                _syllables(rng, _EN_ONSETS, _EN_VOWELS, _EN_CODAS[1:], rng.choice((1, 1, 2)))
                + rng.choice(en_suffixes)
            ),
        )
        de = fresh(
            "de",
            lambda: (
                _syllables(rng, _DE_ONSETS, _DE_VOWELS, _DE_CODAS[1:], rng.choice((1, 2)))
                + rng.choice(de_suffixes)
            ),
        )
        fr_stem = fresh("fr", lambda: _syllables(rng, _FR_ONSETS, _FR_VOWELS, _FR_CODAS, rng.choice((1, 2))))
        suffix = rng.choice(fr_suffixes)
        base = fr_stem + suffix
        if suffix == "eux":
            forms = (base, fr_stem + "euse", base, fr_stem + "euses")
        elif suffix == "if":
            forms = (base, fr_stem + "ive", base + "s", fr_stem + "ives")
        elif suffix == "al":
            forms = (base, base + "e", fr_stem + "aux", base + "es")
        else:
            forms = _fr_adj(base)
        if not claim(en, de, base):
            continue
        adjectives.append(Adjective(en, de, forms))
    return Lexicon(tuple(nouns), tuple(verbs), tuple(adjectives))
