"""Duplicate detection's pure rules: normalisers, pair scores and reasons, and the pairing."""

from __future__ import annotations

from uuid import UUID

import pytest

from crm_contacts.domain.duplicates import (
    Pairing,
    ScanCancelled,
    normalise_company,
    normalise_email,
    normalise_name,
    profile_of,
    score_pair,
)


def rules(a: object, b: object) -> dict[str, str]:
    _, reasons = score_pair(a, b)  # type: ignore[arg-type]
    return {r.rule: r.detail for r in reasons}


def test_names_fold_case_accents_punctuation_and_order() -> None:
    assert normalise_name("Zoë", "O'Brien-Smith") == "obrien smith zoe"
    assert normalise_name("SMITH,", "john") == normalise_name("John", "Smith") == "john smith"
    assert normalise_name("", "", "Søren  Łukasz") == "lukasz soren"


def test_emails_drop_tags_and_gmail_dots_but_keep_other_dots() -> None:
    gmail = normalise_email("J.Smith+news@GoogleMail.com")
    assert gmail is not None
    assert (gmail.local, gmail.domain, gmail.key) == ("jsmith", "gmail.com", "jsmith@gmail.com")
    other = normalise_email("j.smith+crm@acme.com")
    assert other is not None
    assert other.key == "j.smith@acme.com"
    assert normalise_email("no-at-sign") is None
    assert normalise_email("+only@acme.com") is None


def test_company_names_lose_their_legal_form() -> None:
    assert normalise_company("ACME Ltd.") == normalise_company("Acme") == "acme"
    assert normalise_company("Müller GmbH & Co. KG") == "muller"


def test_a_phone_on_one_contact_and_the_same_whatsapp_on_another_is_strong() -> None:
    a = profile_of("Ada", "Lovelace", "", phones=["+442079460001"])
    b = profile_of("", "", "Ada", whatsapps=["+442079460001"])
    score, reasons = score_pair(a, b)
    assert score == 90
    assert [r.as_dict() for r in reasons] == [
        {"rule": "same_phone", "score": 90, "detail": "+442079460001 (phone / whatsapp)"}]


def test_email_variants_are_one_address() -> None:
    a = profile_of("Ada", "Lovelace", "", emails=["ada.lovelace@gmail.com"])
    b = profile_of("A", "L", "", emails=["adalovelace+crm@gmail.com"])
    assert score_pair(a, b)[0] == 95
    assert rules(a, b) == {"same_email": "ada.lovelace@gmail.com / adalovelace+crm@gmail.com"}


def test_one_local_part_at_two_domains_needs_the_same_name() -> None:
    ada = profile_of("Ada", "Lovelace", "", emails=["ada.lovelace@acme.com"])
    ada_home = profile_of("Adá", "Lovelace", "", emails=["ada.lovelace@yahoo.com"])
    bob = profile_of("Bob", "Jones", "", emails=["ada.lovelace@yahoo.com"])
    assert score_pair(ada, ada_home)[0] == 75
    assert "same_email_local_part" in rules(ada, ada_home)
    assert score_pair(ada, bob) == (0, [])


def test_similar_local_parts_need_the_same_digits() -> None:
    typo = profile_of("John", "Smith", "", emails=["jonh.smith84@gmail.com"])
    right = profile_of("John", "Smith", "", emails=["john.smith84@yahoo.com"])
    other = profile_of("John", "Smith", "", emails=["john.smith@yahoo.com"])
    assert "similar_email_local_part" in rules(typo, right)
    assert score_pair(right, other) == (0, [])


def test_same_name_at_the_same_company_is_strong_and_a_similar_one_medium() -> None:
    a = profile_of("Catherine", "Jones", "", companies=["Acme Ltd"])
    b = profile_of("Jones", "Catherine", "", companies=["ACME"])
    c = profile_of("Catharine", "Jones", "", companies=["Acme Inc"])
    d = profile_of("Catherine", "Jones", "", companies=["Globex"])
    assert score_pair(a, b)[0] == 85
    assert rules(a, b)["same_name_same_company"] == "Catherine Jones / Jones Catherine at Acme Ltd"
    assert score_pair(a, c)[0] == 70
    assert "similar_name_same_company" in rules(a, c)
    assert score_pair(a, d) == (0, [])


def test_a_company_email_domain_counts_and_a_free_mail_one_does_not() -> None:
    a = profile_of("Jon", "Smith", "", emails=["jon@acme.io"])
    b = profile_of("John", "Smith", "", emails=["smith.j@acme.io"])
    c = profile_of("Jon", "Smith", "", emails=["jon.s@gmail.com"])
    d = profile_of("John", "Smith", "", emails=["smith.j@gmail.com"])
    assert score_pair(a, b)[0] == 65
    assert "similar_name_same_email_domain" in rules(a, b)
    assert score_pair(c, d) == (0, [])


def test_a_first_name_alone_never_matches_on_names() -> None:
    a = profile_of("John", "", "", companies=["Acme"])
    b = profile_of("John", "", "", companies=["Acme"])
    assert score_pair(a, b) == (0, [])


def uid(n: int) -> UUID:
    return UUID(int=n)


def row(n: int, first: str, last: str, emails: list[str] | None = None, phones: list[str] | None = None,
        whatsapps: list[str] | None = None, companies: list[str] | None = None) -> tuple[object, ...]:
    return (uid(n), first, last, "", emails, phones, whatsapps, companies)


def test_pairing_finds_each_pair_once_with_its_best_score_and_every_reason() -> None:
    pairing = Pairing()
    pairing.add([
        row(2, "Ada", "Lovelace", ["ada@acme.com"], ["+442079460001"], None, ["Acme"]),
        row(1, "Ada", "Lovelace", ["ada+x@acme.com"], None, ["+442079460001"], ["Acme Ltd"]),
        row(3, "Grace", "Hopper", ["grace@navy.mil"], ["+15550100"], None, None),
        row(4, "Alan", "Turing", ["alan@bletchley.uk"], None, ["+15550199"], ["Acme"]),
        row(5, "Ada", "Lovelace", None, None, None, None),  # a name alone: no key to meet on
    ])
    result = pairing.run()
    assert result.contacts == 5
    [pair] = result.pairs
    assert (pair.contact_a, pair.contact_b, pair.score) == (uid(1), uid(2), 95)
    assert {r.rule for r in pair.reasons} == {
        "same_email", "same_phone", "same_name_same_company", "same_name_same_email_domain"}


def test_a_contact_whose_phone_is_also_its_whatsapp_is_not_its_own_duplicate() -> None:
    pairing = Pairing()
    pairing.add([row(1, "Ada", "Lovelace", None, ["+442079460001"], ["+442079460001"])])
    assert pairing.run().pairs == []


def test_a_block_too_large_is_skipped_and_reported() -> None:
    pairing = Pairing(max_block=3)
    pairing.add([row(n, "John", "Smith", [f"john.smith{n}@gmail.com"]) for n in range(1, 6)])
    pairing.add([row(9, "Ada", "Lovelace", ["ada.l@x.com"]), row(10, "Ada", "Lovelace", ["ada.l@y.com"])])
    result = pairing.run()
    assert [(s.kind, s.key, s.size) for s in result.skipped] == [("name", "john smith", 5)]
    assert result.blocks_skipped == 1
    assert [(p.contact_a, p.contact_b, p.score) for p in result.pairs] == [(uid(9), uid(10), 75)]


def test_a_pairing_asked_to_stop_stops() -> None:
    pairing = Pairing(should_stop=lambda: True)
    with pytest.raises(ScanCancelled):
        pairing.add([row(1, "Ada", "Lovelace")])
