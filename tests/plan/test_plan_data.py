"""Consistency checks for the Internet+ action-plan reference data.

The seed text is parsed independently with regular expressions and compared
with ``src/cityplus/modules/plan/data/plan.json``; the organisations file
``src/cityplus/core/data/organisations.json`` is checked for coverage and
integrity.  Nothing from ``cityplus`` is imported.

Note: the seed mixes punctuation widths - the clause brackets, colon and comma
are ASCII ``(`` ``)`` ``:`` ``,`` - so every pattern below accepts both the
ASCII and the full-width forms.
"""

import json
import os
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PLAN_PATH = REPO_ROOT / "src/cityplus/modules/plan/data/plan.json"
ORGS_PATH = REPO_ROOT / "src/cityplus/core/data/organisations.json"
SEED_NAME = "chengdu-internet-plus-action-plan-2015-2017.txt"

NUMERALS = "一二三四五六七八九十"
LP, RP, COLON, COMMA = "[(\uff08]", "[)\uff09]", "[:\uff1a]", "[,\uff0c]"

AREA_RE = re.compile(r"^([" + NUMERALS + r"]+)、(.+)$")
TASK_RE = re.compile(r"^" + LP + r"([" + NUMERALS + r"]+)" + RP + r"(.*)$", re.S)
DUTY_RE = re.compile(r"^(.*)" + LP + r"责任单位" + COLON + r"([^()\uff08\uff09]*)" + RP + r"$", re.S)
LEAD_RE = re.compile(r"^(.*)" + LP + r"牵头单位" + COLON + r"([^()\uff08\uff09]*)" + RP + r"$", re.S)
TAIL_RE = re.compile(COMMA + r"排名第一.*$", re.S)
CODE_RE = re.compile(r"^[a-z][a-z0-9-]{1,31}$")
KINDS = {"commission", "bureau", "office", "centre", "vertical", "district", "zone"}


def chinese_numeral(n):
    if n <= 10:
        return NUMERALS[n - 1]
    tens, ones = divmod(n, 10)
    return (NUMERALS[tens - 1] if tens > 1 else "") + "十" + (NUMERALS[ones - 1] if ones else "")


def split_units(text):
    text = TAIL_RE.sub("", text).strip()
    return [u.strip() for u in text.split("、") if u.strip()]


def seed_path():
    shared = os.environ.get("CITYPLUS_SHARED_DIR")
    base = Path(shared) if shared else REPO_ROOT.parent / "shared"
    return base / "seed" / SEED_NAME


def parse_seed(text):
    """Return (areas, tasks) parsed from the seed text."""
    areas, tasks = [], []
    current = None
    awaiting_intro = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = AREA_RE.match(line)
        if m:
            current = {"numeral": m.group(1), "number": len(areas) + 1,
                       "title": m.group(2), "intro": None, "lead_units": None}
            areas.append(current)
            awaiting_intro = True
            continue
        m = TASK_RE.match(line)
        if m:
            assert current is not None, "task before first area heading: " + line[:30]
            body = m.group(2)
            d = DUTY_RE.match(body)
            if d:
                body, units = d.group(1), split_units(d.group(2))
            else:
                units = []
            tasks.append({"numeral": m.group(1), "number": len(tasks) + 1,
                          "area": current["number"], "text": body, "units": units})
            awaiting_intro = False
            continue
        if awaiting_intro:
            lm = LEAD_RE.match(line)
            assert lm, "area intro without (牵头单位:…) clause: " + line[:30]
            current["intro"] = lm.group(1)
            current["lead_units"] = split_units(lm.group(2))
            awaiting_intro = False
    return areas, tasks


@pytest.fixture(scope="module")
def seed():
    path = seed_path()
    if not path.is_file():
        message = f"shared/seed not found beside the repository: {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return parse_seed(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def plan():
    with PLAN_PATH.open(encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def orgs():
    with ORGS_PATH.open(encoding="utf-8") as fh:
        return json.load(fh)["organisations"]


# --------------------------------------------------------------------------- seed vs data

def test_seed_counts_and_numerals(seed):
    areas, tasks = seed
    assert len(areas) == 12
    assert len(tasks) == 46
    assert [a["numeral"] for a in areas] == [chinese_numeral(n) for n in range(1, 13)]
    assert [t["numeral"] for t in tasks] == [chinese_numeral(n) for n in range(1, 47)]


def test_plan_counts_and_numerals(plan):
    assert len(plan["areas"]) == 12
    assert len(plan["tasks"]) == 46
    assert [a["number"] for a in plan["areas"]] == list(range(1, 13))
    assert [t["number"] for t in plan["tasks"]] == list(range(1, 47))
    for a in plan["areas"]:
        assert a["numeral"] == chinese_numeral(a["number"])
    for t in plan["tasks"]:
        assert t["numeral"] == chinese_numeral(t["number"]), t["number"]


def test_source_names_seed(plan):
    assert plan["source"] == SEED_NAME


def test_areas_match_seed(seed, plan):
    seed_areas, _ = seed
    for s, a in zip(seed_areas, plan["areas"], strict=True):
        assert a["numeral"] == s["numeral"]
        assert a["title"]["zh"] == s["title"], a["number"]
        assert a["intro"]["zh"] == s["intro"], a["number"]
        assert a["lead_units"] == s["lead_units"], a["number"]


def test_tasks_match_seed(seed, plan):
    _, seed_tasks = seed
    for s, t in zip(seed_tasks, plan["tasks"], strict=True):
        n = t["number"]
        assert t["numeral"] == s["numeral"], n
        assert t["area"] == s["area"], n
        assert t["units"] == s["units"], n
        assert t["text"]["zh"] == s["text"], n


def test_task_46_has_no_units(seed, plan):
    _, seed_tasks = seed
    assert seed_tasks[45]["units"] == []
    t46 = plan["tasks"][45]
    assert t46["number"] == 46
    assert t46["units"] == []
    note = t46.get("units_note")
    assert isinstance(note, dict) and note.get("en", "").strip() and note.get("zh", "").strip()


def test_task_1_units_cut_tail(plan):
    assert plan["tasks"][0]["units"] == ["市科技局", "市发改委", "市经信委"]


# --------------------------------------------------------------------------- plan internal

def test_area_task_lists(plan):
    for a in plan["areas"]:
        expected = [t["number"] for t in plan["tasks"] if t["area"] == a["number"]]
        assert a["tasks"] == expected, a["number"]
    assert sorted(n for a in plan["areas"] for n in a["tasks"]) == list(range(1, 47))


def test_area_keys_unique(plan):
    keys = [a["key"] for a in plan["areas"]]
    assert len(keys) == len(set(keys))
    assert all(re.fullmatch(r"[a-z][a-z0-9-]*", k) for k in keys)


def test_english_present(plan):
    assert plan["title"]["zh"].strip() and plan["title"]["en"].strip()
    for a in plan["areas"]:
        assert a["title"]["en"].strip(), a["number"]
        assert a["intro"]["en"].strip(), a["number"]
    for t in plan["tasks"]:
        assert t["title"]["zh"].strip() and len(t["title"]["zh"]) <= 20, t["number"]
        assert t["title"]["en"].strip() and len(t["title"]["en"]) <= 60, t["number"]
        assert t["text"]["en"].strip(), t["number"]


def test_platforms_well_formed(plan):
    for t in plan["tasks"]:
        assert isinstance(t["platforms"], list), t["number"]
        for p in t["platforms"]:
            assert p["zh"].strip() and p["en"].strip(), t["number"]
            assert p["zh"] in t["text"]["zh"], (t["number"], p["zh"])


# --------------------------------------------------------------------------- organisations

def test_every_unit_is_an_organisation(plan, orgs):
    names = {o["name"]["zh"] for o in orgs}
    used = {u for t in plan["tasks"] for u in t["units"]}
    used |= {u for a in plan["areas"] for u in a["lead_units"]}
    assert used, "no units found in plan.json"
    assert sorted(used - names) == []


def test_organisation_codes(orgs):
    codes = [o["code"] for o in orgs]
    assert len(codes) == len(set(codes))
    for c in codes:
        assert CODE_RE.match(c), c
    names = [o["name"]["zh"] for o in orgs]
    assert len(names) == len(set(names))


def test_organisation_fields(orgs):
    codes = {o["code"] for o in orgs}
    for o in orgs:
        assert o["kind"] in KINDS, o["code"]
        assert o["name"]["zh"].strip() and o["name"]["en"].strip(), o["code"]
        assert o["full_name_zh"].strip(), o["code"]
        assert o["parent"] is None or o["parent"] in codes, o["code"]
        assert o["parent"] != o["code"]


def test_sub_bureaus_have_parent(orgs):
    by_zh = {o["name"]["zh"]: o for o in orgs}
    assert by_zh["市公安局"]["code"] == "gaj"
    assert by_zh["市公安局交管局"]["parent"] == "gaj"
    assert by_zh["市公安局消防局"]["parent"] == "gaj"


def test_districts_and_zones(orgs):
    districts = [o for o in orgs if o["kind"] == "district"]
    assert len(districts) == 20
    assert {o["name"]["zh"] for o in districts} == {
        "锦江区", "青羊区", "金牛区", "武侯区", "成华区", "龙泉驿区", "青白江区", "新都区",
        "温江区", "双流区", "郫都区", "新津区", "简阳市", "都江堰市", "彭州市", "邛崃市",
        "崇州市", "金堂县", "大邑县", "蒲江县"}
    zones = {o["code"] for o in orgs if o["kind"] == "zone"}
    assert zones == {"gaoxin", "tianfu", "dongbu"}
