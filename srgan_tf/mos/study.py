"""A prepared study on disk, and the rules for ids and rating orders.

A study folder holds:
  study.json   what the study is: title, scale, methods and their specs, HR and calibration image names,
               item counts (no item ids: nothing there ties a file to a method)
  mos.sqlite   the items (id -> method, image, role), raters, their orders and their scores
  images/      one PNG per item, named <item id>.png, an opaque random id

This module imports no TensorFlow, so the web server and the report start quickly; building a study is
`srgan_tf.mos.prepare`.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from srgan_tf.mos.store import Item, SQLiteStore, Store, open_store

STUDY_FILE = "study.json"
DB_FILE = "mos.sqlite"
IMAGES_DIR = "images"
FORMAT = "srgan-tf-mos/1"

ITEM_ID = re.compile(r"^[0-9a-f]{16}$")
RATER_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
SCORE_LABELS = {1: "bad", 2: "poor", 3: "fair", 4: "good", 5: "excellent"}


class StudyError(ValueError):
    """A study folder that cannot be used, or a study that cannot be built; the message is one line."""


def new_item_id() -> str:
    """16 random hex digits: an image file name that says nothing about the method behind it."""
    return secrets.token_hex(8)


def new_rater_id() -> str:
    """43 URL-safe characters (256 random bits): a rater's anonymous id, which also serves as the rater's
    credential, so it must be unguessable."""
    return secrets.token_urlsafe(32)


def rating_order(items: Sequence[Item], rng: random.Random, tries: int = 50) -> list[str]:
    """The ids of `items` (the test and repeat items) in a random order for one rater.

    Of `tries` shuffles, keeps the one whose closest repeat/original pair is furthest apart, so that a
    repeated image rarely follows its first showing, where a rater would recognise it.
    """
    ids = [i.item_id for i in items]
    pairs = [(i.item_id, i.repeat_of) for i in items if i.repeat_of]
    best, best_gap = list(ids), -1
    for _ in range(tries if pairs else 1):
        rng.shuffle(ids)
        where = {item_id: k for k, item_id in enumerate(ids)}
        gap = min((abs(where[a] - where[b]) for a, b in pairs), default=len(ids))
        if gap > best_gap:
            best, best_gap = list(ids), gap
    return best


@dataclass
class Study:
    """An opened study folder. Items never change after preparation, so they are read once."""

    root: Path
    manifest: dict
    store: Store
    items: dict[str, Item] = field(default_factory=dict)

    @classmethod
    def open(cls, root: str | Path) -> Study:
        """Opens the study in `root`; raises StudyError (one line) if it is not a complete study folder."""
        root = Path(root)
        if not root.is_dir():
            raise StudyError(f"{root}: no such study folder")
        try:
            manifest = json.loads((root / STUDY_FILE).read_text())
        except FileNotFoundError:
            raise StudyError(f"{root}: not a study folder (no {STUDY_FILE}; make one with "
                             "`python -m srgan_tf.mos prepare`)") from None
        except (OSError, ValueError) as e:
            raise StudyError(f"{root / STUDY_FILE}: unreadable ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise StudyError(f"{root / STUDY_FILE}: not a {FORMAT} study manifest")
        try:
            store = open_store(root / DB_FILE)
            items = {i.item_id: i for i in store.items()}
        except (OSError, sqlite3.Error) as e:  # sqlite3.DatabaseError for a corrupt or foreign file
            raise StudyError(f"{root / DB_FILE}: unusable database ({e})") from None
        return cls(root=root, manifest=manifest, store=store, items=items)

    @property
    def methods(self) -> list[str]:
        """Method names in the order they were given to `prepare`."""
        return [m["name"] for m in self.manifest["methods"]]

    @property
    def title(self) -> str:
        return str(self.manifest.get("title") or "Image quality study")

    @property
    def study_id(self) -> str:
        return str(self.manifest["study_id"])

    def rating_items(self) -> list[Item]:
        """The items every rater scores: each test item and each repeat."""
        return [i for i in self.items.values() if i.role in ("test", "repeat")]

    def calibration_items(self) -> list[Item]:
        """The calibration examples in the order they are shown."""
        return sorted((i for i in self.items.values() if i.role == "calibration"), key=lambda i: i.position)

    def image_path(self, item_id: str) -> Path | None:
        """The image file of a known item, or None. The path is built only from ids found in the database,
        never from the text of a request."""
        if not ITEM_ID.match(item_id) or item_id not in self.items:
            return None
        known = self.items[item_id].item_id
        return self.root / IMAGES_DIR / f"{known}.png"


def create_store(path: Path) -> SQLiteStore:
    """A new, empty study database at `path`."""
    store = SQLiteStore(path)
    store.create_schema()
    return store
