"""A deterministic synthetic Text-to-SQL suite: small SQLite databases and templated questions (spec §4).

Every database follows one shape — a *person* table, an *item* table and a *link* table joining
them — dressed in a different domain (shop, school, library, company), so the same question
templates read naturally everywhere. Templates are graded like BIRD's difficulty labels:

* ``simple``: one table, projection / filter / COUNT;
* ``moderate``: a join, or GROUP BY with an aggregate, or ORDER BY ... LIMIT;
* ``challenging``: joins with GROUP BY + ORDER BY / HAVING, three-table joins with two filters,
  NOT IN subqueries.

Questions are written in a small controlled language so a tiny model can learn them. Each gold
query is executed while building; questions whose answer is empty or ambiguous (a tie at a LIMIT
boundary) are skipped, so every gold answer is well defined. Same ``seed`` -> byte-identical files.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DIFFICULTIES",
    "DOMAINS",
    "LOOKUP_TEMPLATES",
    "TEMPLATE_SETS",
    "Domain",
    "SyntheticSuite",
    "build_synthetic_suite",
    "SUITE_MARKER",
    "check_marked_output_dir",
    "check_suite_output_dir",
    "write_synthetic_suite",
]

DIFFICULTIES = ("simple", "moderate", "challenging")


@dataclass(frozen=True)
class Domain:
    """Names of the three tables and their columns in one domain."""

    db_id: str
    person: str  # singular noun, e.g. "customer"
    persons: str  # table name, e.g. "customers"
    p_group: str  # categorical column, e.g. "city"
    p_num: str  # numeric column, e.g. "age"
    item: str
    items: str
    i_name: str  # name column of items, e.g. "title"
    i_group: str
    i_num: str
    link: str  # singular, e.g. "order"
    links: str  # table name
    l_num: str  # numeric column of the link table, e.g. "quantity"
    p_groups: tuple[str, ...]
    i_groups: tuple[str, ...]
    p_num_range: tuple[int, int]
    i_num_range: tuple[int, int]
    l_num_range: tuple[int, int]


DOMAINS: tuple[Domain, ...] = (
    Domain(
        "shop", "customer", "customers", "city", "age",
        "product", "products", "name", "category", "price",
        "order", "orders", "quantity",
        ("paris", "rome", "oslo", "lima", "cairo"),
        ("books", "games", "tools", "food"),
        (18, 80), (2, 500), (1, 20),
    ),
    Domain(
        "school", "student", "students", "major", "year",
        "course", "courses", "title", "department", "credits",
        "grade", "grades", "score",
        ("math", "physics", "history", "biology"),
        ("science", "arts", "economics"),
        (1, 5), (1, 10), (0, 100),
    ),
    Domain(
        "library", "member", "members", "district", "age",
        "book", "books", "title", "genre", "pages",
        "loan", "loans", "days",
        ("north", "south", "east", "west", "center"),
        ("novel", "poetry", "travel", "science"),
        (10, 90), (50, 900), (1, 60),
    ),
    Domain(
        "company", "employee", "employees", "department", "salary",
        "project", "projects", "name", "team", "budget",
        "assignment", "assignments", "hours",
        ("sales", "research", "support", "finance"),
        ("alpha", "beta", "gamma"),
        (1000, 9000), (100, 5000), (1, 40),
    ),
)  # fmt: skip

_FIRST = [
    "ann",
    "bob",
    "cy",
    "dee",
    "eve",
    "finn",
    "gus",
    "hal",
    "ivy",
    "jo",
    "kai",
    "lea",
    "max",
    "nia",
    "oli",
    "pia",
    "quin",
    "rex",
    "sam",
    "tia",
    "uma",
    "vic",
    "wes",
    "xia",
    "yan",
    "zoe",
    "abe",
    "bea",
    "cal",
    "dan",
    "eli",
    "fay",
    "gil",
    "hugo",
    "ida",
    "jan",
    "kim",
    "lou",
    "mei",
    "ned",
    "ora",
]
_ITEM_WORDS = [
    "red",
    "blue",
    "green",
    "gold",
    "silver",
    "amber",
    "coral",
    "ivory",
    "jade",
    "lemon",
    "mint",
    "navy",
    "olive",
    "pearl",
    "ruby",
    "sand",
    "teal",
    "violet",
    "wine",
    "azure",
]
_ITEM_NOUNS = ["lamp", "box", "kite", "map", "drum", "bell", "coin", "fan", "harp", "mask"]


@dataclass
class SyntheticSuite:
    """Databases (DDL + rows per table) and questions, all in memory."""

    databases: dict[str, dict[str, Any]] = field(default_factory=dict)
    questions: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Databases
# ----------------------------------------------------------------------------------------------


def _domain_for(k: int) -> Domain:
    base = DOMAINS[k % len(DOMAINS)]
    if k < len(DOMAINS):
        return base
    from dataclasses import replace

    return replace(base, db_id=f"{base.db_id}_{k // len(DOMAINS) + 1}")


def _ddl(d: Domain) -> list[str]:
    return [
        f"CREATE TABLE {d.persons} (\n  id INTEGER PRIMARY KEY,\n  name TEXT NOT NULL,\n"
        f"  {d.p_group} TEXT NOT NULL,\n  {d.p_num} INTEGER NOT NULL\n)",
        f"CREATE TABLE {d.items} (\n  id INTEGER PRIMARY KEY,\n  {d.i_name} TEXT NOT NULL,\n"
        f"  {d.i_group} TEXT NOT NULL,\n  {d.i_num} INTEGER NOT NULL\n)",
        f"CREATE TABLE {d.links} (\n  id INTEGER PRIMARY KEY,\n"
        f"  {d.person}_id INTEGER NOT NULL REFERENCES {d.persons}(id),\n"
        f"  {d.item}_id INTEGER NOT NULL REFERENCES {d.items}(id),\n  {d.l_num} INTEGER NOT NULL\n)",
    ]


def _distinct_ints(rng: random.Random, lo: int, hi: int, n: int) -> list[int]:
    span = list(range(lo, hi + 1))
    if len(span) >= n:
        return rng.sample(span, n)
    return [rng.randint(lo, hi) for _ in range(n)]


def _make_tables(d: Domain, rng: random.Random, n_persons: int, n_items: int, n_links: int):
    names = rng.sample(_FIRST, min(n_persons, len(_FIRST)))
    p_nums = _distinct_ints(rng, *d.p_num_range, n_persons)
    persons = [(i + 1, names[i], rng.choice(d.p_groups), p_nums[i]) for i in range(n_persons)]
    item_names = rng.sample([f"{a} {b}" for a in _ITEM_WORDS for b in _ITEM_NOUNS], n_items)
    i_nums = _distinct_ints(rng, *d.i_num_range, n_items)
    items = [(i + 1, item_names[i], rng.choice(d.i_groups), i_nums[i]) for i in range(n_items)]
    # a few persons never appear in the link table (for NOT IN questions)
    active = [p[0] for p in persons[: max(1, n_persons - 3)]]
    links = [
        (k + 1, rng.choice(active), rng.randint(1, n_items), rng.randint(*d.l_num_range))
        for k in range(n_links)
    ]
    return {d.persons: persons, d.items: items, d.links: links}


# ----------------------------------------------------------------------------------------------
# Question templates: (difficulty, render(d, rng, tables) -> (question, sql, evidence) | None)
# ----------------------------------------------------------------------------------------------

Template = Callable[[Domain, random.Random, dict[str, list[tuple]]], tuple[str, str, str]]


def _pick_person(rng, t, d):
    return rng.choice(t[d.persons])


def _s_list_by_group(d, rng, t):
    g = rng.choice(d.p_groups)
    return (
        f"List the name of {d.persons} whose {d.p_group} is {g}.",
        f"SELECT name FROM {d.persons} WHERE {d.p_group} = '{g}'",
        "",
    )


def _s_count_by_group(d, rng, t):
    g = rng.choice(d.i_groups)
    return (
        f"How many {d.items} have {d.i_group} {g}?",
        f"SELECT COUNT(*) FROM {d.items} WHERE {d.i_group} = '{g}'",
        "",
    )


def _s_num_of_person(d, rng, t):
    p = _pick_person(rng, t, d)
    return (
        f"What is the {d.p_num} of the {d.person} named {p[1]}?",
        f"SELECT {d.p_num} FROM {d.persons} WHERE name = '{p[1]}'",
        "",
    )


def _s_items_above(d, rng, t):
    v = sorted(x[3] for x in t[d.items])[rng.randint(2, len(t[d.items]) - 3)]
    return (
        f"List the {d.i_name} of {d.items} with {d.i_num} greater than {v}.",
        f"SELECT {d.i_name} FROM {d.items} WHERE {d.i_num} > {v}",
        "",
    )


def _s_two_columns(d, rng, t):
    v = sorted(x[3] for x in t[d.persons])[rng.randint(3, len(t[d.persons]) - 3)]
    return (
        f"List the name and {d.p_group} of {d.persons} with {d.p_num} less than {v}.",
        f"SELECT name, {d.p_group} FROM {d.persons} WHERE {d.p_num} < {v}",
        "",
    )


def _m_count_per_group(d, rng, t):
    return (
        f"For each {d.p_group}, how many {d.persons} are there?",
        f"SELECT {d.p_group}, COUNT(*) FROM {d.persons} GROUP BY {d.p_group}",
        "",
    )


def _m_avg_in_group(d, rng, t):
    g = rng.choice(d.i_groups)
    return (
        f"What is the average {d.i_num} of {d.items} whose {d.i_group} is {g}?",
        f"SELECT AVG({d.i_num}) FROM {d.items} WHERE {d.i_group} = '{g}'",
        "",
    )


def _m_items_of_person(d, rng, t):
    p = _pick_person(rng, t, d)
    return (
        f"List the distinct {d.i_name} of {d.items} in the {d.links} of the {d.person} named {p[1]}.",
        f"SELECT DISTINCT T2.{d.i_name} FROM {d.links} AS T1 JOIN {d.items} AS T2 "
        f"ON T1.{d.item}_id = T2.id JOIN {d.persons} AS T3 ON T1.{d.person}_id = T3.id "
        f"WHERE T3.name = '{p[1]}'",
        "",
    )


def _m_count_links_of_person(d, rng, t):
    p = _pick_person(rng, t, d)
    return (
        f"How many {d.links} does the {d.person} named {p[1]} have?",
        f"SELECT COUNT(*) FROM {d.links} AS T1 JOIN {d.persons} AS T2 ON T1.{d.person}_id = T2.id "
        f"WHERE T2.name = '{p[1]}'",
        "",
    )


def _m_top_items(d, rng, t):
    k = rng.choice((2, 3, 5))
    return (
        f"List the {d.i_name} of the {k} {d.items} with the highest {d.i_num}.",
        f"SELECT {d.i_name} FROM {d.items} ORDER BY {d.i_num} DESC LIMIT {k}",
        "",
    )


def _c_top_person_total(d, rng, t):
    return (
        f"Which {d.person} has the largest total {d.l_num} over all {d.links}? Give the name.",
        f"SELECT T2.name FROM {d.links} AS T1 JOIN {d.persons} AS T2 ON T1.{d.person}_id = T2.id "
        f"GROUP BY T2.id ORDER BY SUM(T1.{d.l_num}) DESC LIMIT 1",
        f"total {d.l_num} refers to SUM({d.links}.{d.l_num})",
    )


def _c_groups_having(d, rng, t):
    n = rng.choice((3, 4, 5, 6))
    return (
        f"List the {d.p_group} values that have more than {n} {d.persons}.",
        f"SELECT {d.p_group} FROM {d.persons} GROUP BY {d.p_group} HAVING COUNT(*) > {n}",
        f"more than {n} {d.persons} refers to COUNT(*) > {n}",
    )


def _c_total_two_filters(d, rng, t):
    ig, pg = rng.choice(d.i_groups), rng.choice(d.p_groups)
    return (
        f"What is the total {d.l_num} of {d.links} of {d.items} with {d.i_group} {ig} "
        f"by {d.persons} whose {d.p_group} is {pg}?",
        f"SELECT SUM(T1.{d.l_num}) FROM {d.links} AS T1 JOIN {d.items} AS T2 ON T1.{d.item}_id = T2.id "
        f"JOIN {d.persons} AS T3 ON T1.{d.person}_id = T3.id "
        f"WHERE T2.{d.i_group} = '{ig}' AND T3.{d.p_group} = '{pg}'",
        f"total {d.l_num} refers to SUM({d.links}.{d.l_num})",
    )


def _c_persons_without_links(d, rng, t):
    return (
        f"List the name of {d.persons} who have no {d.links}.",
        f"SELECT name FROM {d.persons} WHERE id NOT IN (SELECT {d.person}_id FROM {d.links})",
        "",
    )


def _c_avg_per_item_group(d, rng, t):
    return (
        f"For each {d.i_group} of {d.items}, what is the average {d.l_num} of their {d.links}?",
        f"SELECT T2.{d.i_group}, AVG(T1.{d.l_num}) FROM {d.links} AS T1 JOIN {d.items} AS T2 "
        f"ON T1.{d.item}_id = T2.id GROUP BY T2.{d.i_group}",
        f"average {d.l_num} refers to AVG({d.links}.{d.l_num})",
    )


def _c_top_person_in_group(d, rng, t):
    g = rng.choice(d.p_groups)
    return (
        f"Which {d.person} whose {d.p_group} is {g} has the largest total {d.l_num}? Give the name.",
        f"SELECT T2.name FROM {d.links} AS T1 JOIN {d.persons} AS T2 ON T1.{d.person}_id = T2.id "
        f"WHERE T2.{d.p_group} = '{g}' GROUP BY T2.id ORDER BY SUM(T1.{d.l_num}) DESC LIMIT 1",
        f"total {d.l_num} refers to SUM({d.links}.{d.l_num})",
    )


def _c_avg_num_of_linkers(d, rng, t):
    g = rng.choice(d.i_groups)
    return (
        f"What is the average {d.p_num} of {d.persons} with at least one {d.link} of {d.items} "
        f"whose {d.i_group} is {g}?",
        f"SELECT AVG({d.p_num}) FROM {d.persons} WHERE id IN (SELECT T1.{d.person}_id FROM {d.links} "
        f"AS T1 JOIN {d.items} AS T2 ON T1.{d.item}_id = T2.id WHERE T2.{d.i_group} = '{g}')",
        "",
    )


def _c_count_per_group_above(d, rng, t):
    n = sorted(x[3] for x in t[d.links])[rng.randint(len(t[d.links]) // 2, len(t[d.links]) - 5)]
    return (
        f"For each {d.p_group}, how many distinct {d.persons} have a {d.link} with {d.l_num} "
        f"above {n}?",
        f"SELECT T2.{d.p_group}, COUNT(DISTINCT T2.id) FROM {d.links} AS T1 JOIN {d.persons} AS T2 "
        f"ON T1.{d.person}_id = T2.id WHERE T1.{d.l_num} > {n} GROUP BY T2.{d.p_group}",
        "",
    )


TEMPLATES: dict[str, tuple[str, Template]] = {
    "s_list_by_group": ("simple", _s_list_by_group),
    "s_count_by_group": ("simple", _s_count_by_group),
    "s_num_of_person": ("simple", _s_num_of_person),
    "s_items_above": ("simple", _s_items_above),
    "s_two_columns": ("simple", _s_two_columns),
    "m_count_per_group": ("moderate", _m_count_per_group),
    "m_avg_in_group": ("moderate", _m_avg_in_group),
    "m_items_of_person": ("moderate", _m_items_of_person),
    "m_count_links_of_person": ("moderate", _m_count_links_of_person),
    "m_top_items": ("moderate", _m_top_items),
    "c_top_person_total": ("challenging", _c_top_person_total),
    "c_groups_having": ("challenging", _c_groups_having),
    "c_total_two_filters": ("challenging", _c_total_two_filters),
    "c_persons_without_links": ("challenging", _c_persons_without_links),
    "c_avg_per_item_group": ("challenging", _c_avg_per_item_group),
    "c_top_person_in_group": ("challenging", _c_top_person_in_group),
    "c_avg_num_of_linkers": ("challenging", _c_avg_num_of_linkers),
    "c_count_per_group_above": ("challenging", _c_count_per_group_above),
}


# ----------------------------------------------------------------------------------------------
# Lookup templates: the question names a row by a value, the gold query uses a value that must be
# looked up first (an id, a category, a number). An agent explores (``explore_queries``: one lookup,
# or two for ``lk_num_between_persons``), reads the
# value(s) in the observation and answers with a simple query; ``direct_question`` states the looked-up
# value, so the same gold query can be answered in one turn (the fixed-turn control of the bench).
# ----------------------------------------------------------------------------------------------

LookupTemplate = Callable[
    [Domain, random.Random, dict[str, list[tuple]]], tuple[str, str, str, list[str], str]
]


def _pick_item(rng, t, d):
    return rng.choice(t[d.items])


def _lk_count_links_of_person(d, rng, t):
    p = _pick_person(rng, t, d)
    return (
        f"How many {d.links} are recorded for the {d.person} {p[1]}?",
        f"SELECT COUNT(*) FROM {d.links} WHERE {d.person}_id = {p[0]}",
        f"{d.links}.{d.person}_id refers to {d.persons}.id",
        [f"SELECT id FROM {d.persons} WHERE name = '{p[1]}'"],
        f"How many {d.links} are recorded for the {d.person} with id {p[0]}?",
    )


def _lk_total_of_person(d, rng, t):
    p = _pick_person(rng, t, d)
    return (
        f"What is the total {d.l_num} of the {d.links} recorded for the {d.person} {p[1]}?",
        f"SELECT SUM({d.l_num}) FROM {d.links} WHERE {d.person}_id = {p[0]}",
        f"{d.links}.{d.person}_id refers to {d.persons}.id",
        [f"SELECT id FROM {d.persons} WHERE name = '{p[1]}'"],
        f"What is the total {d.l_num} of the {d.links} recorded for the {d.person} with id {p[0]}?",
    )


def _lk_links_of_item(d, rng, t):
    it = _pick_item(rng, t, d)
    return (
        f"List the {d.l_num} of the {d.links} recorded for the {d.item} {it[1]}.",
        f"SELECT {d.l_num} FROM {d.links} WHERE {d.item}_id = {it[0]}",
        f"{d.links}.{d.item}_id refers to {d.items}.id",
        [f"SELECT id FROM {d.items} WHERE {d.i_name} = '{it[1]}'"],
        f"List the {d.l_num} of the {d.links} recorded for the {d.item} with id {it[0]}.",
    )


def _lk_same_group(d, rng, t):
    p = _pick_person(rng, t, d)
    return (
        f"List the name of {d.persons} with the same {d.p_group} as {p[1]}.",
        f"SELECT name FROM {d.persons} WHERE {d.p_group} = '{p[2]}'",
        "",
        [f"SELECT {d.p_group} FROM {d.persons} WHERE name = '{p[1]}'"],
        f"List the name of {d.persons} with the {d.p_group} {p[2]}.",
    )


def _lk_num_above_person(d, rng, t):
    p = _pick_person(rng, t, d)
    return (
        f"List the name of {d.persons} whose {d.p_num} is greater than the {d.p_num} of {p[1]}.",
        f"SELECT name FROM {d.persons} WHERE {d.p_num} > {p[3]}",
        "",
        [f"SELECT {d.p_num} FROM {d.persons} WHERE name = '{p[1]}'"],
        f"List the name of {d.persons} whose {d.p_num} is greater than {p[3]}.",
    )


def _lk_items_below_item(d, rng, t):
    it = _pick_item(rng, t, d)
    return (
        f"List the {d.i_name} of {d.items} whose {d.i_num} is less than the {d.i_num} of {it[1]}.",
        f"SELECT {d.i_name} FROM {d.items} WHERE {d.i_num} < {it[3]}",
        "",
        [f"SELECT {d.i_num} FROM {d.items} WHERE {d.i_name} = '{it[1]}'"],
        f"List the {d.i_name} of {d.items} whose {d.i_num} is less than {it[3]}.",
    )


def _lk_items_of_person(d, rng, t):
    p = _pick_person(rng, t, d)
    return (
        f"List the distinct {d.i_name} of {d.items} in the {d.links} recorded for the {d.person} "
        f"{p[1]}.",
        f"SELECT DISTINCT T2.{d.i_name} FROM {d.links} AS T1 JOIN {d.items} AS T2 "
        f"ON T1.{d.item}_id = T2.id WHERE T1.{d.person}_id = {p[0]}",
        f"{d.links}.{d.person}_id refers to {d.persons}.id",
        [f"SELECT id FROM {d.persons} WHERE name = '{p[1]}'"],
        f"List the distinct {d.i_name} of {d.items} in the {d.links} recorded for the {d.person} "
        f"with id {p[0]}.",
    )


def _lk_num_between_persons(d, rng, t):
    a, b = rng.sample(t[d.persons], 2)
    lo, hi = sorted((a, b), key=lambda p: p[3])
    return (
        f"List the name of {d.persons} whose {d.p_num} is between the {d.p_num} of {lo[1]} and the "
        f"{d.p_num} of {hi[1]}.",
        f"SELECT name FROM {d.persons} WHERE {d.p_num} > {lo[3]} AND {d.p_num} < {hi[3]}",
        "between refers to strictly greater and strictly less",
        [
            f"SELECT {d.p_num} FROM {d.persons} WHERE name = '{lo[1]}'",
            f"SELECT {d.p_num} FROM {d.persons} WHERE name = '{hi[1]}'",
        ],
        f"List the name of {d.persons} whose {d.p_num} is between {lo[3]} and {hi[3]}.",
    )


LOOKUP_TEMPLATES: dict[str, tuple[str, LookupTemplate]] = {
    "lk_same_group": ("simple", _lk_same_group),
    "lk_num_above_person": ("simple", _lk_num_above_person),
    "lk_items_below_item": ("simple", _lk_items_below_item),
    "lk_count_links_of_person": ("moderate", _lk_count_links_of_person),
    "lk_total_of_person": ("moderate", _lk_total_of_person),
    "lk_links_of_item": ("moderate", _lk_links_of_item),
    "lk_items_of_person": ("challenging", _lk_items_of_person),
    "lk_num_between_persons": ("challenging", _lk_num_between_persons),
}
"""Templates whose gold query needs a looked-up value (``template_set="lookup"`` or ``"mixed"``)."""

TEMPLATE_SETS = ("standard", "lookup", "mixed")


def _render(tname: str, d: Domain, rng: random.Random, tables: dict) -> dict[str, str]:
    if tname in LOOKUP_TEMPLATES:
        q, sql, ev, explore, direct = LOOKUP_TEMPLATES[tname][1](d, rng, tables)
        return {
            "question": q,
            "SQL": sql,
            "evidence": ev,
            "explore_queries": explore,
            "direct_question": direct,
        }
    q, sql, ev = TEMPLATES[tname][1](d, rng, tables)
    return {"question": q, "SQL": sql, "evidence": ev}


def _well_defined(conn: sqlite3.Connection, sql: str) -> bool:
    """Non-empty, non-NULL answer; for ORDER BY ... LIMIT k no tie at the boundary."""
    rows = conn.execute(sql).fetchall()
    if not rows or all(v is None for r in rows for v in r):
        return False
    if " LIMIT " in sql and " ORDER BY " in sql:
        head, limit = sql.rsplit(" LIMIT ", 1)
        k = int(limit)
        order_expr = head.rsplit(" ORDER BY ", 1)[1].removesuffix(" DESC")
        base = head.rsplit(" ORDER BY ", 1)[0]
        sel_from = base.split(" FROM ", 1)[1]
        keys = [r[0] for r in conn.execute(f"SELECT {order_expr} FROM {sel_from} ORDER BY 1 DESC")]
        if len(keys) > k and keys[k - 1] == keys[k]:
            return False
    return True


def build_synthetic_suite(
    n_dbs: int = 4,
    n_questions: int = 200,
    seed: int = 0,
    *,
    n_persons: int = 30,
    n_items: int = 20,
    n_links: int = 120,
    test_fraction: float = 0.2,
    template_set: str = "standard",
) -> SyntheticSuite:
    """Build the suite in memory (deterministic in ``seed``).

    Questions cycle over templates (equal thirds of simple / moderate / challenging) and databases;
    duplicates are skipped. Each question gets ``split`` = ``"train"`` or ``"test"`` (about
    ``test_fraction`` held out) and its ``template`` name.

    ``template_set``: ``"standard"`` (the default; :data:`TEMPLATES`, answerable in one query),
    ``"lookup"`` (:data:`LOOKUP_TEMPLATES`: the gold query uses an id or a value that the question
    does not state, so an agent must look it up first) or ``"mixed"`` (both). Lookup questions also
    carry ``explore_queries`` (the lookup queries, one or two) and ``direct_question`` (the same
    question with the looked-up values stated, answerable in one turn by the same gold query).
    """
    if template_set not in TEMPLATE_SETS:
        raise ValueError(f"template_set must be one of {list(TEMPLATE_SETS)}, got {template_set!r}")
    if n_dbs < 1:
        raise ValueError(f"n_dbs must be >= 1, got {n_dbs}")
    if n_questions < 1:
        raise ValueError(f"n_questions must be >= 1, got {n_questions}")
    if not 5 <= n_persons <= len(_FIRST):
        raise ValueError(f"n_persons must be in [5, {len(_FIRST)}], got {n_persons}")
    if not 6 <= n_items <= len(_ITEM_WORDS) * len(_ITEM_NOUNS):
        raise ValueError(
            f"n_items must be in [6, {len(_ITEM_WORDS) * len(_ITEM_NOUNS)}], got {n_items}"
        )
    suite = SyntheticSuite()
    conns: dict[str, sqlite3.Connection] = {}
    domains = [_domain_for(k) for k in range(n_dbs)]
    for k, d in enumerate(domains):
        rng = random.Random(f"{seed}/db/{k}")
        tables = _make_tables(d, rng, n_persons, n_items, n_links)
        suite.databases[d.db_id] = {"ddl": _ddl(d), "tables": tables, "domain": d}
        conn = sqlite3.connect(":memory:")
        _fill(conn, suite.databases[d.db_id])
        conns[d.db_id] = conn
    rng = random.Random(f"{seed}/questions")
    pool = {
        "standard": {k: v[0] for k, v in TEMPLATES.items()},
        "lookup": {k: v[0] for k, v in LOOKUP_TEMPLATES.items()},
        "mixed": {
            **{k: v[0] for k, v in TEMPLATES.items()},
            **{k: v[0] for k, v in LOOKUP_TEMPLATES.items()},
        },
    }[template_set]
    by_diff = {diff: [n for n in pool if pool[n] == diff] for diff in DIFFICULTIES}
    seen: set[tuple[str, str]] = set()
    attempts = 0
    i = 0
    while len(suite.questions) < n_questions and attempts < n_questions * 50:
        diff = DIFFICULTIES[i % 3]
        d = domains[(i // 3) % len(domains)]
        i += 1
        for _ in range(20):  # retry this (difficulty, database) slot before moving on
            attempts += 1
            tname = rng.choice(by_diff[diff])
            r = _render(tname, d, rng, suite.databases[d.db_id]["tables"])
            if (d.db_id, r["question"]) not in seen and _well_defined(conns[d.db_id], r["SQL"]):
                break
        else:
            continue
        seen.add((d.db_id, r["question"]))
        extra = {k: r[k] for k in ("explore_queries", "direct_question") if k in r}
        suite.questions.append(
            {
                "question_id": len(suite.questions),
                "db_id": d.db_id,
                "question": r["question"],
                "evidence": r["evidence"],
                "SQL": r["SQL"],
                "difficulty": diff,
                "template": tname,
                "split": "test" if rng.random() < test_fraction else "train",
                **extra,
            }
        )
    for c in conns.values():
        c.close()
    return suite


def _fill(conn: sqlite3.Connection, db: dict[str, Any]) -> None:
    for stmt in db["ddl"]:
        conn.execute(stmt)
    for table, rows in db["tables"].items():
        if rows:
            marks = ",".join("?" * len(rows[0]))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    conn.commit()


SUITE_MARKER = ".agentic-sql-synthetic"
"""File that marks a folder as a synthetic suite written by agentic-sql (safe to rewrite)."""


def check_marked_output_dir(
    out_dir: str | os.PathLike, *, marker: str, what: str, not_ours: str
) -> Path:
    """Refuse an output folder that holds anything but files agentic-sql wrote there; return it.

    Allowed: a folder that does not exist yet, an empty folder, or a folder holding the ``marker``
    file. ``what`` names the output ("the synthetic suite"), ``not_ours`` completes "the folder is
    not empty and ..." in the error message.

    Raises:
        UnsafeOutputDirError: ``out_dir`` is a file, or a non-empty folder without ``marker``.
    """
    from agentic_sql.errors import UnsafeOutputDirError

    out = Path(out_dir)
    if not out.exists():
        return out
    if not out.is_dir():
        raise UnsafeOutputDirError(
            f"cannot write {what} to {str(out)!r}: it is a file, expected a new or empty folder"
        )
    if (out / marker).is_file() or not any(out.iterdir()):
        return out
    shown = sorted(p.name for p in out.iterdir())[:5]
    raise UnsafeOutputDirError(
        f"refusing to write {what} into {str(out)!r}: the folder is not empty (holds {shown}) and "
        f"{not_ours} (no {marker} file); nothing was written. Choose a new or empty folder."
    )


def check_suite_output_dir(out_dir: str | os.PathLike) -> Path:
    """Refuse a folder that holds anything but a synthetic suite; return it as a ``Path``.

    Allowed: a folder that does not exist yet, an empty folder, or a folder holding the
    :data:`SUITE_MARKER` file (a suite written by agentic-sql before, which is rewritten in place).

    Raises:
        UnsafeOutputDirError: ``out_dir`` is a file, or a non-empty folder without the marker (a
            user's BIRD folder, say: its ``dev.json`` / ``train.json`` would be replaced).
    """
    return check_marked_output_dir(
        out_dir,
        marker=SUITE_MARKER,
        what="the synthetic suite",
        not_ours="is not a synthetic suite written by agentic-sql",
    )


def write_synthetic_suite(
    suite: SyntheticSuite, out_dir: str | os.PathLike, *, data_mode: str = "dev"
) -> Path:
    """Write the suite in the BIRD layout and return ``out_dir``.

    Files: ``<out_dir>/<db_id>/<db_id>.sqlite`` for each database, ``<out_dir>/<data_mode>.json``
    (every question, BIRD fields plus ``template`` and ``split``), ``train.json`` / ``test.json``
    (the two splits), and ``<data_mode>_gold.sql`` (``SQL\\tdb_id`` lines, the official script's gold
    file), and the :data:`SUITE_MARKER` file. Existing database files are replaced atomically, so
    rewriting gives identical bytes.

    Raises:
        UnsafeOutputDirError: ``out_dir`` is not new, empty or an earlier synthetic suite
            (:func:`check_suite_output_dir`); checked before anything is written.
    """
    from papercore.io import atomic_write, write_json

    out = check_suite_output_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUITE_MARKER).write_text(
        "This folder holds a synthetic Text-to-SQL suite written by agentic-sql; "
        "agentic-sql may rewrite it.\n",
        encoding="utf-8",
    )
    for db_id, db in suite.databases.items():
        folder = out / db_id
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{db_id}.sqlite.tmp"
        if tmp.exists():
            tmp.unlink()
        conn = sqlite3.connect(tmp)
        try:
            _fill(conn, db)
        finally:
            conn.close()
        os.replace(tmp, folder / f"{db_id}.sqlite")
    write_json(out / f"{data_mode}.json", suite.questions)
    for split in ("train", "test"):
        write_json(out / f"{split}.json", [q for q in suite.questions if q["split"] == split])
    with atomic_write(out / f"{data_mode}_gold.sql") as fh:
        for q in suite.questions:
            fh.write(f"{q['SQL']}\t{q['db_id']}\n")
    with atomic_write(out / "README.txt") as fh:
        fh.write(
            "Synthetic Text-to-SQL suite (agentic-sql). BIRD layout: <db_id>/<db_id>.sqlite; "
            f"{data_mode}.json holds every question ({len(suite.questions)}).\n"
        )
    return out
