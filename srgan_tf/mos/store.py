"""The study's database: items, raters, their rating orders and their scores.

`Store` is the interface the web app and the report use. `SQLStore` implements it with plain SQL that
SQLite and PostgreSQL both accept (standard types, CHECK/UNIQUE/FOREIGN KEY constraints,
`INSERT ... ON CONFLICT DO NOTHING`), written with `:name` parameters; a backend supplies only a connection
and, if its driver wants another parameter style, a translation (`_sql`). `SQLiteStore` is the backend in
use. A PostgreSQL backend would subclass `SQLStore`, connect with psycopg and turn `:name` into `%(name)s`.

The rules that keep a study's data valid live in the schema itself, so no code path can break them: a score
is an integer 1..5, a rater scores an item only if it is in that rater's order, and at most once.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

ROLES = ("test", "repeat", "calibration")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS items (
        item_id TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('test', 'repeat', 'calibration')),
        method TEXT NOT NULL,
        image TEXT NOT NULL,
        repeat_of TEXT REFERENCES items (item_id),
        reference_score INTEGER CHECK (reference_score BETWEEN 1 AND 5),
        position INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS raters (
        rater_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        calibrated_at TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS assignments (
        rater_id TEXT NOT NULL REFERENCES raters (rater_id),
        position INTEGER NOT NULL,
        item_id TEXT NOT NULL REFERENCES items (item_id),
        PRIMARY KEY (rater_id, position),
        UNIQUE (rater_id, item_id)
    )""",
    """CREATE TABLE IF NOT EXISTS scores (
        rater_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
        created_at TEXT NOT NULL,
        PRIMARY KEY (rater_id, item_id),
        FOREIGN KEY (rater_id, item_id) REFERENCES assignments (rater_id, item_id)
    )""",
)


@dataclass(frozen=True)
class Item:
    """One image file shown to raters. `role` is "test" (rated), "repeat" (rated again, a copy of the test
    item `repeat_of`, for test-retest reliability) or "calibration" (shown with `reference_score`)."""

    item_id: str
    role: str
    method: str
    image: str
    repeat_of: str | None = None
    reference_score: int | None = None
    position: int = 0


@dataclass(frozen=True)
class Rater:
    rater_id: str
    created_at: str
    calibrated_at: str | None


@dataclass(frozen=True)
class Score:
    rater_id: str
    item_id: str
    score: int
    created_at: str


@dataclass(frozen=True)
class Progress:
    """How far a rater is: `done` of `total` items scored; `next_item` is the first unscored one in the
    rater's order, None when all are done."""

    done: int
    total: int
    next_item: str | None


class Outcome(Enum):
    """What `Store.add_score` did. Only STORED wrote anything."""

    STORED = "stored"
    UNKNOWN_RATER = "unknown rater"
    NOT_CALIBRATED = "calibration not finished"
    NOT_ASSIGNED = "not an item of this rater"
    DUPLICATE = "already scored"
    OUT_OF_RANGE = "score outside 1..5"


def now() -> str:
    """The current UTC time as ISO 8601 text (portable, and sorts in time order)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Store(ABC):
    """The repository the web app and the report talk to; every method is one committed transaction."""

    @abstractmethod
    def create_schema(self) -> None: ...

    @abstractmethod
    def add_items(self, items: Sequence[Item]) -> None: ...

    @abstractmethod
    def items(self) -> list[Item]:
        """Every item, ordered by role then position."""

    @abstractmethod
    def create_rater(self, rater_id: str, order: Sequence[str]) -> None:
        """Adds a rater who will score the items `order` in that order."""

    @abstractmethod
    def rater(self, rater_id: str) -> Rater | None: ...

    @abstractmethod
    def raters(self) -> list[Rater]:
        """Every rater, oldest first."""

    @abstractmethod
    def mark_calibrated(self, rater_id: str) -> bool:
        """Records that the rater finished calibration (the first time only); False for an unknown rater."""

    @abstractmethod
    def progress(self, rater_id: str) -> Progress | None:
        """The rater's progress, None for an unknown rater."""

    @abstractmethod
    def add_score(self, rater_id: str, item_id: str, score: int) -> Outcome:
        """Stores and commits one score if it is valid, else says why not and stores nothing."""

    @abstractmethod
    def scores(self) -> list[Score]:
        """Every stored score, oldest first."""

    @abstractmethod
    def assignment_counts(self) -> dict[str, int]:
        """Rater id -> how many items that rater is to score."""


class SQLStore(Store):
    """`Store` in portable SQL over a DB-API 2 connection supplied by a subclass."""

    @abstractmethod
    def _connect(self):
        """A new DB-API connection with foreign keys enforced."""

    def _sql(self, text: str) -> str:
        """The statement in the driver's parameter style (written with `:name`)."""
        return text

    @contextmanager
    def _transaction(self) -> Iterator:
        conn = self._connect()
        try:
            cur = conn.cursor()
            yield cur
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def _query(self, text: str, params: dict | None = None) -> list[tuple]:
        with self._transaction() as cur:
            cur.execute(self._sql(text), params or {})
            return cur.fetchall()

    def create_schema(self) -> None:
        with self._transaction() as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    def add_items(self, items: Sequence[Item]) -> None:
        text = self._sql("INSERT INTO items (item_id, role, method, image, repeat_of, reference_score, position) "
                         "VALUES (:item_id, :role, :method, :image, :repeat_of, :reference_score, :position)")
        with self._transaction() as cur:
            # Originals before their repeats, so the foreign key to items is satisfied row by row.
            for item in sorted(items, key=lambda i: i.repeat_of is not None):
                cur.execute(text, asdict(item))

    def items(self) -> list[Item]:
        rows = self._query("SELECT item_id, role, method, image, repeat_of, reference_score, position FROM items "
                           "ORDER BY role, position, item_id")
        return [Item(*row) for row in rows]

    def create_rater(self, rater_id: str, order: Sequence[str]) -> None:
        with self._transaction() as cur:
            cur.execute(self._sql("INSERT INTO raters (rater_id, created_at) VALUES (:rater_id, :created_at)"),
                        {"rater_id": rater_id, "created_at": now()})
            text = self._sql("INSERT INTO assignments (rater_id, position, item_id) "
                             "VALUES (:rater_id, :position, :item_id)")
            for position, item_id in enumerate(order):
                cur.execute(text, {"rater_id": rater_id, "position": position, "item_id": item_id})

    def rater(self, rater_id: str) -> Rater | None:
        rows = self._query("SELECT rater_id, created_at, calibrated_at FROM raters WHERE rater_id = :rater_id",
                           {"rater_id": rater_id})
        return Rater(*rows[0]) if rows else None

    def raters(self) -> list[Rater]:
        return [Rater(*row) for row in
                self._query("SELECT rater_id, created_at, calibrated_at FROM raters ORDER BY created_at, rater_id")]

    def mark_calibrated(self, rater_id: str) -> bool:
        with self._transaction() as cur:
            cur.execute(self._sql("UPDATE raters SET calibrated_at = :now "
                                  "WHERE rater_id = :rater_id AND calibrated_at IS NULL"),
                        {"now": now(), "rater_id": rater_id})
            cur.execute(self._sql("SELECT 1 FROM raters WHERE rater_id = :rater_id"), {"rater_id": rater_id})
            return cur.fetchone() is not None

    def progress(self, rater_id: str) -> Progress | None:
        with self._transaction() as cur:
            params = {"rater_id": rater_id}
            cur.execute(self._sql("SELECT 1 FROM raters WHERE rater_id = :rater_id"), params)
            if cur.fetchone() is None:
                return None
            cur.execute(self._sql("SELECT COUNT(*) FROM assignments WHERE rater_id = :rater_id"), params)
            total = cur.fetchone()[0]
            cur.execute(self._sql("SELECT COUNT(*) FROM scores WHERE rater_id = :rater_id"), params)
            done = cur.fetchone()[0]
            cur.execute(self._sql(
                "SELECT a.item_id FROM assignments a LEFT JOIN scores s "
                "ON s.rater_id = a.rater_id AND s.item_id = a.item_id "
                "WHERE a.rater_id = :rater_id AND s.item_id IS NULL ORDER BY a.position LIMIT 1"), params)
            row = cur.fetchone()
            return Progress(done=done, total=total, next_item=row[0] if row else None)

    def add_score(self, rater_id: str, item_id: str, score: int) -> Outcome:
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            return Outcome.OUT_OF_RANGE
        params = {"rater_id": rater_id, "item_id": item_id, "score": score, "created_at": now()}
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT calibrated_at FROM raters WHERE rater_id = :rater_id"), params)
            row = cur.fetchone()
            if row is None:
                return Outcome.UNKNOWN_RATER
            if row[0] is None:
                return Outcome.NOT_CALIBRATED
            cur.execute(self._sql("SELECT 1 FROM assignments WHERE rater_id = :rater_id AND item_id = :item_id"),
                        params)
            if cur.fetchone() is None:
                return Outcome.NOT_ASSIGNED
            # The primary key settles a race between two submissions of the same score: one row, one winner.
            cur.execute(self._sql("INSERT INTO scores (rater_id, item_id, score, created_at) "
                                  "VALUES (:rater_id, :item_id, :score, :created_at) "
                                  "ON CONFLICT (rater_id, item_id) DO NOTHING"), params)
            return Outcome.STORED if cur.rowcount == 1 else Outcome.DUPLICATE

    def scores(self) -> list[Score]:
        return [Score(*row) for row in self._query(
            "SELECT rater_id, item_id, score, created_at FROM scores ORDER BY created_at, rater_id, item_id")]

    def assignment_counts(self) -> dict[str, int]:
        return dict(self._query("SELECT rater_id, COUNT(*) FROM assignments GROUP BY rater_id"))


class SQLiteStore(SQLStore):
    """`SQLStore` on an SQLite file in WAL mode, with a fresh connection per transaction (so any thread may
    call it) and `synchronous=FULL`, so a committed score survives a killed process or a power cut."""

    BUSY_TIMEOUT_MS = 10_000

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.BUSY_TIMEOUT_MS / 1000)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA busy_timeout = {self.BUSY_TIMEOUT_MS}")
        return conn

    def create_schema(self) -> None:
        conn = sqlite3.connect(self.path)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # stored in the file: every later connection uses it
        finally:
            conn.close()
        super().create_schema()

    def journal_mode(self) -> str:
        return self._query("PRAGMA journal_mode")[0][0]


def open_store(path: str | Path) -> SQLiteStore:
    """The store of an existing study database file (raises FileNotFoundError if there is none, rather than
    letting SQLite create an empty one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such database")
    return SQLiteStore(path)
