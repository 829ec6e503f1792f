"""Container ids and names: 64 hex ids, docker-style ``adjective_surname`` names.

Names are unique per store (the containers table has a UNIQUE name column); ``generate``
only proposes, the insert decides. Like docker's names-generator, a proposal that is taken
gets a digit appended on retry.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # (re is imported on first use, by _name_re)
    import re

    NAME_RE: re.Pattern[str]

_ADJ = (
    "admiring adoring affectionate agitated amazing angry awesome beautiful blissful bold boring brave "
    "busy charming clever compassionate competent condescending confident cool cranky crazy dazzling "
    "determined distracted dreamy eager ecstatic elastic elated elegant eloquent epic exciting fervent "
    "festive flamboyant focused friendly frosty funny gallant gifted goofy gracious great happy hardcore "
    "heuristic hopeful hungry infallible inspiring intelligent interesting jolly jovial keen kind laughing "
    "loving lucid magical modest musing mystifying naughty nervous nice nifty nostalgic objective optimistic "
    "peaceful pedantic pensive practical priceless quirky quizzical recursing relaxed reverent romantic sad "
    "serene sharp silly sleepy stoic strange stupefied suspicious sweet tender thirsty trusting unruffled "
    "upbeat vibrant vigilant vigorous wizardly wonderful xenodochial youthful zealous zen"
).split()

_NAMES = (
    "agnesi albattani allen almeida antonelli archimedes ardinghelli aryabhata austin babbage banach "
    "bardeen bartik bassi beaver bell benz bhabha bhaskara black blackburn blackwell bohr booth borg bose "
    "bouman boyd brahmagupta brattain brown buck burnell cannon carson cartwright carver cerf chandrasekhar "
    "chaplygin chatelet chatterjee chebyshev clarke cohen colden cori cray curie darwin davinci dewdney "
    "dhawan diffie dijkstra dirac driscoll dubinsky easley edison einstein elbakyan elgamal elion ellis "
    "engelbart euclid euler faraday feistel fermat fermi feynman franklin gagarin galileo galois ganguly "
    "gates gauss germain goldberg goldstine goldwasser golick goodall gould greider grothendieck haibt "
    "hamilton haslett hawking heisenberg hellman hermann herschel hertz heyrovsky hodgkin hofstadter "
    "hoover hopper hugle hypatia jackson jang jennings jepsen johnson joliot jones kalam kapitsa kare "
    "keldysh keller kepler khayyam khorana kilby kirch knuth kowalevski lalande lamarr lamport leakey "
    "leavitt lederberg lehmann lewin lichterman liskov lovelace lumiere mahavira margulis matsumoto "
    "maxwell mayer mccarthy mcclintock mclaren mclean mcnulty meitner mendel mendeleev merkle mestorf "
    "mirzakhani montalcini moore morse moser murdock napier nash neumann newton nightingale nobel noether "
    "northcutt noyce panini pare pascal pasteur payne perlman pike poincare poitras proskuriakova ptolemy "
    "raman ramanujan rhodes ride ritchie robinson roentgen rosalind rubin saha sammet sanderson satoshi "
    "shamir shannon shaw shirley shockley shtern sinoussi snyder solomon spence stonebraker sutherland "
    "swanson swartz swirles taussig tesla tharp thompson torvalds tu turing varahamihira vaughan "
    "villani visvesvaraya volhard wescoff wilbur wiles williams williamson wilson wing wozniak wright wu "
    "yalow yonath zhukovsky"
).split()

_NAME_PATTERN = r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$"


def _name_re() -> object:
    rx = globals().get("NAME_RE")
    if rx is None:
        import re

        globals()["NAME_RE"] = rx = re.compile(_NAME_PATTERN)
    return rx


def __getattr__(attr: str) -> object:
    """``NAME_RE``, compiled on first use (``re`` imports enum: ~5 ms, not on ``run``'s path)."""
    if attr == "NAME_RE":
        return _name_re()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def new_id() -> str:
    return os.urandom(32).hex()


def _pick(seq: tuple[str, ...] | list[str]) -> str:
    return seq[int.from_bytes(os.urandom(4), "little") % len(seq)]  # (no ``random``: ~3 ms of imports)


def generate(retry: int = 0) -> str:
    name = f"{_pick(_ADJ)}_{_pick(_NAMES)}"
    if name == "boring_wozniak":  # docker's one rule: Steve Wozniak is not boring
        return generate(retry)
    return f"{name}{os.urandom(1)[0] % 10}" if retry else name


def valid(name: str) -> bool:
    return bool(_name_re().match(name))  # type: ignore[attr-defined]
