"""Fill a contacts database with realistic contacts for benchmarks, with planted duplicates.

    .venv/bin/python bench/contacts_data.py --contacts 1000000 --dsn postgresql://postgres@127.0.0.1:5432/db

The database gets the contacts service's migrations, then ``--contacts`` contacts in one
workspace: names (some with accents), one or two emails (work addresses at their company's
domain, personal ones at free-mail providers), phones, WhatsApp identities, companies, tags
and custom fields. About 2 % of them are planted duplicates of another contact, in four kinds:

- ``phone_whatsapp``: a WhatsApp contact whose number is another contact's phone;
- ``email_variant``: the same address spelt differently (+tag, Gmail dots);
- ``email_other_domain``: the same local part at another provider, with the same name;
- ``name_company``: the name with a typo, an accent or its parts swapped, at the same company.

The planted pairs are kept in the table ``bench_planted`` (contact_a < contact_b, kind), so a
benchmark can measure its recall on a database it reuses. A few contacts are merged away or
erased: a scan must skip them. Everything is loaded with COPY.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import time
import unicodedata
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import accumulate
from pathlib import Path

import asyncpg

from crmkit.postgres import migrate

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = ROOT / "services" / "contacts" / "migrations"


def words(text: str) -> list[str]:
    return text.split()


PLANTED_KINDS = ("phone_whatsapp", "email_variant", "email_other_domain", "name_company")

FIRST = words(
    "James John Robert Michael William David Richard Joseph Thomas Charles Mary Patricia Jennifer "
    "Linda Elizabeth Barbara Susan Jessica Sarah Karen Daniel Matthew Anthony Mark Donald Steven "
    "Paul Andrew Joshua Kenneth Nancy Lisa Betty Margaret Sandra Ashley Kimberly Emily Donna "
    "Michelle Oliver George Harry Jack Jacob Noah Charlie Muhammad Amelia Olivia Isla Ava Mia "
    "Isabella Sophie Grace Lily Freya Hans Jürgen Klaus Stefan Anna Lena Lukas Jonas Maximilian "
    "Léa Chloé Manon Camille Hugo Louis Théo Gabriel Raphaël Zoë Chiara Giulia Francesca Matteo "
    "Lorenzo Alessandro José María Lucía Sofía Martín Mateo Álvaro João Inês Beatriz Søren Åsa "
    "Björn Ingrid Siobhán Seán Niamh Aoife Priya Arjun Rahul Ananya Wei Li Hiroshi Yuki Sakura "
    "Kenji Olga Dmitri Ivan Natalia Agnieszka Piotr Katarzyna Tomasz Fatima Omar Aisha Youssef "
    "Kwame Amara Chidi Ngozi Catherine Katherine Stephen Jon Sean Shaun Zoe Lea Chloe Rafael"
)
LAST_COMMON = words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Müller Schmidt "
    "Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Dubois Lefèvre Moreau Girard "
    "Rossi Russo Ferrari Esposito Bianchi Romano Fernández Pérez Gómez Díaz Álvarez Silva Santos "
    "Oliveira Pereira Costa Jensen Nielsen Hansen Andersson Johansson Karlsson O'Brien O'Connor "
    "Murphy Kelly Walsh Byrne Patel Sharma Singh Kumar Gupta Wang Zhang Liu Chen Yang Tanaka "
    "Suzuki Takahashi Watanabe Ivanov Petrov Kowalski Nowak Wiśniewski Okafor Mensah Diallo"
)
SYLLABLES_A = words("Ander Berg Carl Dahl Eck Fal Gold Hart Ives Jans Kirk Lind Mor Nord Ost Pfeif "
               "Quin Ros Stein Thal Ul Vos Wald Yar Zell Bran Crom Dorn Els Frank")
SYLLABLES_M = words("ing el ow ar en is ol um at ev ir us")
SYLLABLES_B = words("son sen mann berg ley field ford ham ton wood well by stone croft hurst ridge "
               "worth ling er ini elli ez ov sky ström gaard")
FREE_MAIL = ("gmail.com", "gmail.com", "gmail.com", "yahoo.com", "outlook.com", "hotmail.com",
             "icloud.com", "gmx.de", "web.de", "orange.fr", "libero.it", "proton.me")
WORDS = words("North South East West Blue Red Green Silver Golden Bright Swift Prime Alpha Nova Stellar "
         "Urban Coastal Summit River Maple Oak Cedar Iron Crystal Quantum Vertex Apex Orbit Atlas "
         "Harbor Meadow Pioneer Beacon Falcon Eagle Lion Tiger Fox Wolf")
TRADES = words("Logistics Consulting Software Foods Motors Energy Health Media Capital Labs Systems "
          "Partners Retail Textiles Robotics Analytics Design Travel Pharma Foundry")
LEGAL = ("Ltd", "Inc", "GmbH", "LLC", "SA", "SRL", "AB", "BV", "Group", "")
TAGS = ("vip", "newsletter", "lead", "customer", "partner", "event-2024", "webinar", "churn-risk",
        "trial", "enterprise", "smb", "referral")
SOURCES = ("web", "import", "email", "whatsapp", "event", "api")
PHONE_PREFIXES = ("+447", "+4915", "+336", "+3934", "+1415", "+3460")


def surnames() -> list[str]:
    return (LAST_COMMON + [a + b for a in SYLLABLES_A for b in SYLLABLES_B]
            + [a + m + b for m in SYLLABLES_M for a in SYLLABLES_A for b in SYLLABLES_B])


@cache
def ascii_fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def local_part(first: str, last: str, rng: random.Random) -> str:
    f, la = ascii_fold(first).lower(), ascii_fold(last).lower().replace("'", "")
    pattern = rng.randrange(8)
    if pattern == 0:
        return f"{f}.{la}"
    if pattern == 1:
        return f"{f[0]}{la}{rng.randrange(100, 9999)}"
    if pattern == 2:
        return f"{f}{la}{rng.randrange(1950, 2010)}"
    if pattern == 3:
        return f"{f}.{la}{rng.randrange(10, 99)}"
    if pattern == 4:
        return f"{f}_{la[:3]}{rng.randrange(100, 999)}"
    if pattern == 5:
        return f"{la}.{f}"
    if pattern == 6:
        return f"{f[:3]}{la[:4]}{rng.randrange(1, 999)}"
    return f"{rng.choice(WORDS).lower()}.{f}{rng.randrange(10, 99)}"


def typo(word: str, rng: random.Random) -> str:
    """One edit inside a word (never its first letter): drop, double or swap a letter."""
    if len(word) < 4:
        return word + word[-1]
    i = rng.randrange(1, len(word) - 1)
    edit = rng.randrange(3)
    if edit == 0:
        return word[:i] + word[i + 1:]
    if edit == 1:
        return word[:i] + word[i] + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


@dataclass
class Dataset:
    contacts: list[tuple[object, ...]] = field(default_factory=list)
    identities: list[tuple[object, ...]] = field(default_factory=list)
    companies: list[tuple[object, ...]] = field(default_factory=list)
    links: list[tuple[object, ...]] = field(default_factory=list)
    planted: list[tuple[uuid.UUID, uuid.UUID, str]] = field(default_factory=list)


class Generator:
    def __init__(self, workspace: str, seed: int) -> None:
        self.workspace = workspace
        self.rng = random.Random(seed)
        self.data = Dataset()
        self.taken: set[tuple[str, str]] = set()
        self.now = datetime.now(UTC)
        self.phone_serial = 0
        # Drawn ahead, in bulk: for one contact at a time, this is most of the generator's time.
        self.created = [self.now - timedelta(days=self.rng.randrange(1, 2000),
                                             seconds=self.rng.randrange(86400)) for _ in range(5000)]
        self.customs = [json.dumps({"source": self.rng.choice(SOURCES), "score": self.rng.randrange(100),
                                    "newsletter": self.rng.random() < 0.4}) for _ in range(1000)]
        self.tag_sets = [self.rng.sample(TAGS, self.rng.randrange(0, 3)) for _ in range(500)]

    def names(self, count: int) -> list[tuple[str, str]]:
        first_weights = list(accumulate(1 / (i + 1) ** 0.6 for i in range(len(FIRST))))
        last = surnames()
        last_weights = list(accumulate(1 / (i + 1) ** 0.5 for i in range(len(last))))
        return list(zip(self.rng.choices(FIRST, cum_weights=first_weights, k=count),
                        self.rng.choices(last, cum_weights=last_weights, k=count), strict=True))

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=(self.rng.getrandbits(128) & ~(0xF << 76)) | (0x4 << 76))

    def add_companies(self, count: int) -> list[tuple[uuid.UUID, str, str]]:
        made: list[tuple[uuid.UUID, str, str]] = []
        names: set[str] = set()
        while len(made) < count:
            base = f"{self.rng.choice(WORDS)}{self.rng.choice(WORDS).lower()} {self.rng.choice(TRADES)}"
            if base in names:
                base = f"{base} {len(made)}"
            names.add(base)
            name = f"{base} {self.rng.choice(LEGAL)}".strip()
            domain = base.lower().replace(" ", "") + self.rng.choice((".com", ".de", ".co.uk", ".io"))
            company_id = self.new_id()
            self.data.companies.append((company_id, self.workspace, name, [domain], self.rng.choice(TRADES),
                                        self.rng.randrange(1, 5000), "{}", self.now, self.now))
            made.append((company_id, name, domain))
        return made

    def identity(self, kind: str, value: str, contact_id: uuid.UUID) -> bool:
        if (kind, value) in self.taken:
            return False
        self.taken.add((kind, value))
        self.data.identities.append((self.workspace, kind, value, contact_id, self.now, kind == "email"))
        return True

    def email(self, local: str, domain: str, contact_id: uuid.UUID) -> str:
        address = f"{local}@{domain}"
        while not self.identity("email", address, contact_id):
            address = f"{local}{self.rng.randrange(1000, 99999)}@{domain}"
        return address

    def phone(self) -> str:
        self.phone_serial += 1
        prefix = PHONE_PREFIXES[self.phone_serial % len(PHONE_PREFIXES)]
        return f"{prefix}{(self.phone_serial * 7919 + 1_234_567) % 10**8:08d}"

    def contact(self, first: str, last: str, *, merged_into: uuid.UUID | None = None,
                erased: bool = False, display: str | None = None) -> uuid.UUID:
        contact_id = self.new_id()
        rng = self.rng
        created = rng.choice(self.created)
        tags = rng.choice(self.tag_sets)
        custom = rng.choice(self.customs)
        display = display if display is not None else f"{first} {last}".strip()
        stage = rng.choice(("subscriber", "lead", "customer"))
        self.data.contacts.append((
            contact_id, self.workspace, display, first, last, tags, custom, stage, created, created,
            rng.randrange(0, 40), display.lower(), merged_into, self.now if erased else None,
        ))
        return contact_id

    def person(self, first: str, last: str, companies: list[tuple[uuid.UUID, str, str]]
               ) -> dict[str, object]:
        rng = self.rng
        company = rng.choice(companies) if rng.random() < 0.7 else None
        contact_id = self.contact(first, last)
        emails: list[str] = []
        if company is not None:
            self.data.links.append((self.workspace, contact_id, company[0], rng.choice(("", "CEO", "buyer"))))
            if rng.random() < 0.7:
                emails.append(self.email(local_part(first, last, rng), company[2], contact_id))
        if not emails or rng.random() < 0.35:
            emails.append(self.email(local_part(first, last, rng), rng.choice(FREE_MAIL), contact_id))
        phone = None
        whatsapp = False
        if rng.random() < 0.6:
            phone = self.phone()
            self.identity("phone", phone, contact_id)
            if rng.random() < 0.25:
                self.identity("whatsapp", phone, contact_id)
                whatsapp = True
        elif rng.random() < 0.1:
            self.identity("whatsapp", self.phone(), contact_id)
        return {"id": contact_id, "first": first, "last": last, "company": company,
                "emails": emails, "phone": phone, "whatsapp": whatsapp}

    def plant(self, kind: str, source: dict[str, object]) -> uuid.UUID | None:
        """A second contact for the same person as ``source``; None when ``source`` cannot have
        one of this kind."""
        rng = self.rng
        first, last = str(source["first"]), str(source["last"])
        emails = [str(e) for e in source["emails"]]  # type: ignore[attr-defined]
        if kind == "phone_whatsapp":
            if source["phone"] is None or source["whatsapp"]:
                return None
            dup = self.contact(first, "" if rng.random() < 0.5 else last)
            self.identity("whatsapp", str(source["phone"]), dup)
            return dup
        if kind == "email_variant":
            local, _, domain = emails[0].partition("@")
            if domain == "gmail.com":
                variant = local.replace(".", "") if "." in local else f"{local[:2]}.{local[2:]}"
            else:
                variant = f"{local}+{rng.choice(('news', 'crm', 'work', 'shop'))}"
            if ("email", f"{variant}@{domain}") in self.taken:
                return None
            dup = self.contact(first, last)
            self.identity("email", f"{variant}@{domain}", dup)
            return dup
        if kind == "email_other_domain":
            local, _, domain = emails[0].partition("@")
            other = rng.choice([d for d in FREE_MAIL if d != domain])
            if ("email", f"{local}@{other}") in self.taken:
                return None
            dup = self.contact(ascii_fold(first), last)
            self.identity("email", f"{local}@{other}", dup)
            return dup
        company = source["company"]
        if company is None:
            return None
        change = rng.randrange(3)
        if change == 0:
            dup = self.contact(typo(first, rng) if len(first) >= len(last) else first,
                               typo(last, rng) if len(last) > len(first) else last)
        elif change == 1:
            dup = self.contact(last, first)
        else:
            dup = self.contact(ascii_fold(first).upper(), ascii_fold(last))
        company_id, _, company_domain = company  # type: ignore[misc]
        self.data.links.append((self.workspace, dup, company_id, ""))
        if rng.random() < 0.5:
            self.email(f"{first[0].lower()}.{ascii_fold(last).lower()}{rng.randrange(100)}",
                       company_domain, dup)
        return dup


def generate(workspace: str, contacts: int, duplicate_rate: float = 0.02, seed: int = 7) -> Dataset:
    """``contacts`` contacts in all, of which about ``duplicate_rate`` are planted duplicates."""
    gc.disable()  # millions of long-lived tuples: the collector would double the time
    try:
        return _generate(workspace, contacts, duplicate_rate, seed)
    finally:
        gc.enable()


def _generate(workspace: str, contacts: int, duplicate_rate: float, seed: int) -> Dataset:
    gen = Generator(workspace, seed)
    companies = gen.add_companies(max(10, contacts // 25))
    planted_total = round(contacts * duplicate_rate)
    gone = max(2, contacts // 500)  # merged away or erased
    people = [gen.person(first, last, companies)
              for first, last in gen.names(contacts - planted_total - gone)]
    for index in range(gone):
        source = people[index]
        if index % 2:
            gen.contact(str(source["first"]), str(source["last"]), erased=True)
        else:
            merged = gen.contact(str(source["first"]), str(source["last"]), merged_into=source["id"])  # type: ignore[arg-type]
            gen.identity("whatsapp", f"+4479{index:08d}", merged)
            if source["phone"] is not None and not source["whatsapp"]:
                gen.identity("whatsapp", str(source["phone"]), merged)  # must not be found
    sources = iter(gen.rng.sample(people[gone:], min(len(people) - gone, planted_total * 2)))
    for index in range(planted_total):
        kind = PLANTED_KINDS[index % len(PLANTED_KINDS)]
        for source in sources:
            dup = gen.plant(kind, source)
            if dup is not None:
                a, b = sorted((source["id"], dup))  # type: ignore[type-var]
                gen.data.planted.append((a, b, kind))
                break
    return gen.data


CONTACT_COLUMNS = ("id", "workspace_id", "display_name", "first_name", "last_name", "tags", "custom",
                   "lifecycle_stage", "created_at", "updated_at", "interaction_count", "search_text",
                   "merged_into", "erased_at")


LOADED = ("contacts", "identities", "contact_companies", "companies")


async def load(dsn: str, data: Dataset) -> None:
    """Apply the migrations, then COPY the dataset in. For speed, as any bulk load does: the
    tables' secondary indexes are dropped first and built again afterwards (two at a time),
    and foreign keys are not checked row by row when the user may skip them (a superuser, as
    on the local server): the data is consistent by construction."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, command_timeout=None)
    try:
        await migrate(pool, MIGRATIONS)
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS bench_planted ("
                               " contact_a uuid NOT NULL, contact_b uuid NOT NULL, kind text NOT NULL)")
            indexes = await conn.fetch(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i"
                " WHERE i.schemaname = 'public' AND i.tablename = ANY($1::text[]) AND NOT EXISTS ("
                "  SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
                list(LOADED))
            for index in indexes:
                await conn.execute(f'DROP INDEX "{index["indexname"]}"')

        async def copy(table: str, records: list[tuple[object, ...]], columns: tuple[str, ...]) -> None:
            async with pool.acquire() as conn:
                with suppress(asyncpg.InsufficientPrivilegeError):
                    await conn.execute("SET session_replication_role = replica")
                await conn.copy_records_to_table(table, records=records, columns=columns)

        await copy("companies", data.companies, ("id", "workspace_id", "name", "domains", "industry",
                                                 "size", "custom", "created_at", "updated_at"))
        await asyncio.gather(
            copy("contacts", data.contacts, CONTACT_COLUMNS),
            copy("identities", data.identities,
                 ("workspace_id", "kind", "value", "contact_id", "created_at", "verified")),
            copy("contact_companies", data.links, ("workspace_id", "contact_id", "company_id", "role")),
            copy("bench_planted", data.planted, ("contact_a", "contact_b", "kind")),
        )
        pending = [str(index["indexdef"]) for index in indexes]

        async def build() -> None:
            async with pool.acquire() as conn:
                while pending:
                    await conn.execute(pending.pop())

        await asyncio.gather(build(), build())
        async with pool.acquire() as conn:
            await conn.execute("ANALYZE " + ", ".join(LOADED))
    finally:
        await pool.close()


async def fill(dsn: str, workspace: str, contacts: int, duplicate_rate: float = 0.02,
               seed: int = 7) -> Dataset:
    """Generate and load: the one call a benchmark needs."""
    data = await asyncio.to_thread(generate, workspace, contacts, duplicate_rate, seed)
    await load(dsn, data)
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--dsn", required=True, help="the database to fill (it must exist)")
    parser.add_argument("--workspace", default="bench")
    parser.add_argument("--duplicate-rate", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    data = generate(args.workspace, args.contacts, args.duplicate_rate, args.seed)
    generated = time.perf_counter()
    asyncio.run(load(args.dsn, data))
    print(f"{len(data.contacts):,} contacts, {len(data.identities):,} identities, "
          f"{len(data.companies):,} companies, {len(data.planted):,} planted duplicates: "
          f"generated in {generated - started:.1f}s, loaded in {time.perf_counter() - generated:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
