"""Duplicate detection: normalisers, blocking keys, the scoring of a pair of contacts, and the
pairing of a whole workspace's contacts. Pure: no I/O (docs/duplicates.md explains the rules).

A scan never compares every contact with every other. Each contact gets a few blocking keys
(its phone numbers, its normalised email addresses, ...); only contacts that share a key are
compared, and a block too large to be a signal ("john smith") is skipped and reported.
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from itertools import repeat
from typing import Any, NamedTuple
from uuid import UUID

import numpy as np
from rapidfuzz import fuzz, process

from crm_contacts.domain.errors import ContactsError

NAME_CUTOFF = 90  # fuzz.ratio of sorted name tokens, i.e. token_sort_ratio
LOCAL_CUTOFF = 85  # fuzz.ratio of two normalised email local parts
MAX_BLOCK = 500  # larger blocks are skipped: too common to mean the same person
SKIPPED_NOTED = 20  # the largest skipped blocks a scan reports

RULES: dict[str, int] = {
    "same_email": 95,  # the same address once normalised (+tags, Gmail dots, case)
    "same_phone": 90,  # one number on both, as phone or WhatsApp
    "same_name_same_company": 85,
    "same_email_local_part": 75,  # the same local part at two domains, and the same name
    "same_name_same_email_domain": 75,  # a company domain, not a free-mail one
    "similar_name_same_company": 70,
    "similar_email_local_part": 65,
    "similar_name_same_email_domain": 65,
}

FREE_MAIL = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "ymail.com",
    "outlook.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr", "live.com", "msn.com",
    "icloud.com", "me.com", "mac.com", "aol.com", "proton.me", "protonmail.com", "gmx.de",
    "gmx.net", "gmx.com", "web.de", "t-online.de", "orange.fr", "free.fr", "laposte.net",
    "libero.it", "mail.ru", "yandex.ru", "qq.com", "163.com", "naver.com", "zoho.com",
    "mail.com", "fastmail.com",
})
GMAIL = frozenset({"gmail.com", "googlemail.com"})
ROLE_LOCAL_PARTS = frozenset({
    "info", "admin", "sales", "contact", "support", "hello", "office", "mail", "team", "billing",
    "noreply", "no-reply", "help", "enquiries", "inquiries", "marketing", "accounts", "hr",
    "jobs", "webmaster", "service", "news", "press",
})
LEGAL_FORMS = frozenset({
    "ltd", "limited", "inc", "incorporated", "llc", "llp", "lp", "gmbh", "ag", "kg", "sa", "sas",
    "sarl", "srl", "spa", "bv", "nv", "ab", "as", "oy", "plc", "co", "corp", "corporation",
    "company", "group", "pty",
})

_DIGITS = re.compile(r"\d+")
_APOSTROPHES = re.compile("['\u2019`\u00b4]")
_PUNCTUATION = re.compile(r"[\W_]+")
_UNDECOMPOSED = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d",
                               "þ": "th", "\u0131": "i"})


class ScanCancelled(ContactsError):
    def __init__(self) -> None:
        super().__init__("the scan was cancelled")


@lru_cache(maxsize=1 << 17)
def fold(text: str) -> str:
    """Casefolded, without accents or punctuation, single spaces: 'Zoë O'Brien-Smith' ->
    'zoe obrien smith'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_UNDECOMPOSED))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_PUNCTUATION.sub(" ", _APOSTROPHES.sub("", bare)).split())


@lru_cache(maxsize=1 << 17)
def normalise_name(first: str, last: str, display: str = "") -> str:
    """Folded name tokens in sorted order, so that 'Smith, John' and 'John Smith' agree. The
    first and last names when there are any, else the display name."""
    tokens = (fold(first) + " " + fold(last)).split() if first or last else fold(display).split()
    tokens.sort()
    return " ".join(tokens)


@lru_cache(maxsize=1 << 16)
def normalise_company(name: str) -> str:
    """Folded, without legal forms: 'ACME Ltd.' and 'Acme' agree."""
    tokens = [t for t in fold(name).split() if t not in LEGAL_FORMS]
    return " ".join(tokens) or fold(name)


class Email(NamedTuple):  # a tuple: a scan makes millions
    address: str  # as stored
    local: str  # lower-case, without a +tag, without dots at Gmail
    domain: str

    @property
    def key(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def specific(self) -> bool:
        """A local part that names a person, not a role: worth matching across domains."""
        return len(self.local) >= 4 and self.local not in ROLE_LOCAL_PARTS


def normalise_email(address: str) -> Email | None:
    raw = address.strip().lower()
    local, at, domain = raw.rpartition("@")
    local = local.split("+", 1)[0]
    if domain in GMAIL:
        local, domain = local.replace(".", ""), "gmail.com"
    if not at or not local or not domain:
        return None
    return Email(raw, local, domain)


class Profile(NamedTuple):
    """What a scan knows of one contact, normalised once."""

    name: str  # normalise_name(): sorted folded tokens
    label: str  # the name as written, for reasons
    emails: tuple[Email, ...] = ()
    phones: tuple[tuple[str, str], ...] = ()  # (E.164 number, identity kind)
    companies: tuple[tuple[str, str], ...] = ()  # (normalised, as written)

    @property
    def named(self) -> bool:
        """At least two name tokens: one alone ('John') says too little to match on."""
        return " " in self.name


def profile_of(first: str, last: str, display: str, emails: Iterable[str] = (),
               phones: Iterable[str] = (), whatsapps: Iterable[str] = (),
               companies: Iterable[str] = ()) -> Profile:
    found = []
    for address in emails:
        email = normalise_email(address)
        if email is not None:
            found.append(email)
    return Profile(
        normalise_name(first, last, display),
        display or f"{first} {last}".strip(),
        tuple(found),
        tuple([(p, "phone") for p in phones] + [(w, "whatsapp") for w in whatsapps]),
        tuple([(normalise_company(c), c) for c in companies]),
    )


# --- blocking -------------------------------------------------------------------------------
# A key's first letter is its kind. Exact kinds pair every member; the others compare a text
# of each member (BLOCK_TEXT) with rapidfuzz and pair those at or above the cutoff.

BLOCK_KINDS = {"p": "phone", "e": "email", "l": "email local part", "c": "name at company",
               "d": "name at email domain", "n": "name"}
_EXACT = frozenset("pe")
_CUTOFFS = {"l": NAME_CUTOFF, "c": NAME_CUTOFF, "d": NAME_CUTOFF, "n": LOCAL_CUTOFF}


def blocking_keys(profile: Profile) -> list[str]:
    keys = [f"p{number}" for number, _ in profile.phones]
    keys += [f"e{e.key}" for e in profile.emails]
    if not profile.named:
        return keys
    keys += [f"l{e.local}" for e in profile.emails if e.specific]
    keys.append(f"n{profile.name}")
    prefixes = {token[:3] for token in profile.name.split() if len(token) > 1}
    for company in {c for c, _ in profile.companies}:
        keys += [f"c{company}|{p}" for p in prefixes]
    for domain in {e.domain for e in profile.emails if e.domain not in FREE_MAIL}:
        keys += [f"d{domain}|{p}" for p in prefixes]
    return keys


def block_texts(kind: str, profile: Profile) -> list[str]:
    """What a fuzzy block compares: the name, or for same-name blocks the email local parts."""
    if kind == "n":
        return [e.local for e in profile.emails]
    return [profile.name]


def _alike(a: str, b: str) -> bool:
    """Local parts alike enough to be one person's: near in spelling, with the same digits
    ('john.smith84' and 'jonh.smith84'). Different digits ('john.smith', 'john.smith84') are
    how different people get addresses at one provider."""
    return bool(fuzz.ratio(a, b, score_cutoff=LOCAL_CUTOFF)) and _DIGITS.findall(a) == _DIGITS.findall(b)


# --- scoring --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Reason:
    rule: str
    detail: str

    @property
    def score(self) -> int:
        return RULES[self.rule]

    def as_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "score": self.score, "detail": self.detail}


def score_pair(a: Profile, b: Profile) -> tuple[int, list[Reason]]:
    """Every rule that holds for the pair; the score is the best of theirs (0 when none)."""
    reasons: list[Reason] = []
    numbers = dict(a.phones)
    reasons += [Reason("same_phone", f"{number} ({numbers[number]} / {kind})")
                for number, kind in b.phones if number in numbers]
    names = fuzz.ratio(a.name, b.name) if a.named and b.named else 0.0
    same_name = names >= NAME_CUTOFF
    for ea in a.emails:
        for eb in b.emails:
            pair = f"{ea.address} / {eb.address}"
            if ea.key == eb.key:
                reasons.append(Reason("same_email", pair))
            elif not same_name:
                continue
            elif ea.local == eb.local and ea.specific:
                reasons.append(Reason("same_email_local_part", f"{pair}, {a.label} / {b.label}"))
            elif _alike(ea.local, eb.local) and ea.specific:
                similar = fuzz.ratio(ea.local, eb.local)
                reasons.append(Reason("similar_email_local_part",
                                      f"{pair} ({similar:.0f}% alike), {a.label} / {b.label}"))
    if same_name:
        exact = a.name == b.name
        people = f"{a.label} / {b.label}" + ("" if exact else f" ({names:.0f}% alike)")
        written = dict(a.companies)
        shared = sorted(written.keys() & {c for c, _ in b.companies})
        if shared:
            rule = "same_name_same_company" if exact else "similar_name_same_company"
            reasons.append(Reason(rule, f"{people} at {written[shared[0]]}"))
        domains = sorted({e.domain for e in a.emails if e.domain not in FREE_MAIL}
                         & {e.domain for e in b.emails})
        if domains:
            rule = "same_name_same_email_domain" if exact else "similar_name_same_email_domain"
            reasons.append(Reason(rule, f"{people} at @{domains[0]}"))
    return max((r.score for r in reasons), default=0), reasons


# --- pairing a workspace --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SkippedBlock:
    kind: str
    key: str
    size: int

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "key": self.key, "size": self.size}


@dataclass(frozen=True, slots=True)
class Pair:
    contact_a: UUID  # contact_a < contact_b
    contact_b: UUID
    score: int
    reasons: list[Reason]


@dataclass
class PairingResult:
    contacts: int
    pairs: list[Pair]
    blocks_compared: int = 0
    blocks_skipped: int = 0
    comparisons: int = 0
    skipped: list[SkippedBlock] = field(default_factory=list)  # the largest ones


class Pairing:
    """Collects contacts (in batches, as they are read), then finds the duplicate pairs.
    CPU-bound: callers run it off the event loop. ``should_stop`` is polled now and then."""

    def __init__(self, max_block: int = MAX_BLOCK,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.max_block = max_block
        self.should_stop = should_stop
        self.ids: list[UUID] = []
        self.profiles: list[Profile] = []
        # One entry per (blocking key, contact): the key's hash, its kind, the contact's index.
        # Flat arrays, grouped once at the end: a dict of millions of lists is three times slower.
        self._hashes = array("q")
        self._kinds = bytearray()
        self._members = array("i")

    def add(self, rows: Iterable[Sequence[Any]]) -> None:
        """Rows of (id, first name, last name, display name, emails, phones, WhatsApp numbers,
        company names); None for an empty list."""
        hashes, kinds, members = self._hashes, self._kinds, self._members
        for contact_id, first, last, display, emails, phones, whatsapps, companies in rows:
            profile = profile_of(first, last, display, emails or (), phones or (), whatsapps or (),
                                 companies or ())
            keys = blocking_keys(profile)
            hashes.extend(map(hash, keys))
            kinds.extend("".join([key[0] for key in keys]).encode())
            members.extend(repeat(len(self.profiles), len(keys)))
            self.ids.append(contact_id)
            self.profiles.append(profile)
        if self.should_stop():
            raise ScanCancelled()

    def run(self) -> PairingResult:
        result = PairingResult(len(self.profiles), [])
        candidates: set[tuple[int, int]] = set()
        skipped: list[SkippedBlock] = []
        for count, (kind, members) in enumerate(self._blocks()):
            if count % 20_000 == 0 and self.should_stop():
                raise ScanCancelled()
            if len(set(members)) < 2:  # one contact twice (its phone is also its WhatsApp)
                continue
            if len(members) > self.max_block:
                skipped.append(self._skipped(kind, members))
                continue
            result.blocks_compared += 1
            result.comparisons += self._compare(kind, members, candidates)
        result.blocks_skipped = len(skipped)
        result.skipped = sorted(skipped, key=lambda s: -s.size)[:SKIPPED_NOTED]
        for count, (i, j) in enumerate(candidates):
            if count % 50_000 == 0 and self.should_stop():
                raise ScanCancelled()
            if self.ids[j] < self.ids[i]:  # reasons name contact_a's side first
                i, j = j, i
            score, reasons = score_pair(self.profiles[i], self.profiles[j])
            if score:
                result.pairs.append(Pair(self.ids[i], self.ids[j], score, reasons))
        self._release()
        return result

    def _release(self) -> None:
        """Let go of the contacts a slice at a time: freeing millions of objects in one call
        would hold the GIL, and so stop the event loop, for a second or more."""
        for items in (self.profiles, self.ids):
            while items:
                del items[-20_000:]

    def _blocks(self) -> Iterator[tuple[str, list[int]]]:
        """The blocks of two entries or more, as (kind, contact indexes); a block is the
        entries with one key hash (a rare collision of two keys only adds pairs to score)."""
        hashes = np.frombuffer(self._hashes, dtype=np.int64)
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        sizes = np.diff(np.r_[starts, len(ordered)])
        shared = sizes > 1
        members = np.frombuffer(self._members, dtype=np.int32)[order]
        kinds = np.frombuffer(self._kinds, dtype=np.uint8)[order]
        self._hashes, self._kinds, self._members = array("q"), bytearray(), array("i")
        for start, size in zip(starts[shared].tolist(), sizes[shared].tolist(), strict=True):
            yield chr(kinds[start]), members[start:start + size].tolist()

    def _skipped(self, kind: str, members: list[int]) -> SkippedBlock:
        """A block too large to compare, named by the key its members share."""
        keys = [k for k in blocking_keys(self.profiles[members[0]]) if k[0] == kind]
        shared = next((k for k in keys if all(k in blocking_keys(self.profiles[m]) for m in members[1:3])),
                      keys[0] if keys else kind)
        return SkippedBlock(BLOCK_KINDS.get(kind, kind), shared[1:], len(members))

    def _compare(self, kind: str, members: list[int], candidates: set[tuple[int, int]]) -> int:
        """Add the block's candidate pairs (lower index first); returns the comparisons made."""
        if kind in _EXACT:
            unique = sorted(set(members))
            candidates.update((unique[x], y) for x in range(len(unique)) for y in unique[x + 1:])
            return 0
        owners: list[int] = []
        texts: list[str] = []
        for index in members:
            for text in block_texts(kind, self.profiles[index]):
                owners.append(index)
                texts.append(text)
        cutoff = _CUTOFFS[kind]
        agree = _alike if kind == "n" else None
        if len(texts) == 2:
            i, j = owners
            if i != j and (_alike(*texts) if agree else fuzz.ratio(*texts, score_cutoff=cutoff)):
                candidates.add((i, j) if i < j else (j, i))
            return 1
        scores = process.cdist(texts, texts, scorer=fuzz.ratio, score_cutoff=cutoff, dtype=np.uint8,
                               workers=2 if len(texts) > 300 else 1)
        for x, y in zip(*np.nonzero(np.triu(scores, 1)), strict=True):
            i, j = owners[x], owners[y]
            if i != j and (agree is None or agree(texts[x], texts[y])):
                candidates.add((i, j) if i < j else (j, i))
        return len(texts) * (len(texts) - 1) // 2


# --- scans and their stored candidates ------------------------------------------------------

class ScanStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class DuplicateScan:
    id: UUID
    workspace_id: str
    status: ScanStatus
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    contacts_scanned: int
    blocks_compared: int
    blocks_skipped: int
    comparisons: int
    candidates: int
    skipped: list[dict[str, Any]]  # SkippedBlock.as_dict() of the largest skipped blocks
    error: str | None


@dataclass(frozen=True)
class Candidate:
    contact_a: UUID
    contact_b: UUID
    score: int
    reasons: list[dict[str, Any]]  # Reason.as_dict()


# --- pages of candidates ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CandidatePosition:
    """Where a page of candidates ends: ordered by score (highest first), then the pair."""

    score: int
    contact_a: UUID
    contact_b: UUID
