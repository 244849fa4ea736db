"""Controlled vocabularies of the catalogue: themes, licences, frequencies, opening/sharing attributes, grades.

Codes are stable identifiers stored in the tables; labels are bilingual; URIs are what DCAT-AP exports.
"""

from __future__ import annotations

from dataclasses import dataclass

EU = "http://publications.europa.eu/resource/authority/"


@dataclass(frozen=True)
class Term:
    code: str
    zh: str
    en: str
    uri: str = ""

    def label(self, locale: str) -> str:
        return self.zh if locale.startswith("zh") else self.en


# The 12 areas of the Chengdu action plan ("area-<n>", keys as in the plan module's data).
PLAN_AREAS: tuple[Term, ...] = tuple(
    Term(f"area-{n}", zh, en) for n, zh, en in (
        (1, "创业创新", "Entrepreneurship and innovation"), (2, "协同制造", "Collaborative manufacturing"),
        (3, "现代农业", "Modern agriculture"), (4, "商贸流通", "Trade and distribution"),
        (5, "普惠金融", "Inclusive finance"), (6, "政务服务", "Government services"),
        (7, "惠民服务", "Public welfare services"), (8, "智慧能源", "Smart energy"),
        (9, "智慧物流", "Smart logistics"), (10, "智慧交通", "Smart transport"),
        (11, "绿色生态", "Green ecology"), (12, "基础保障", "Foundational support")))

# The EU data-theme vocabulary (what DCAT-AP expects in dcat:theme).
EU_THEMES: tuple[Term, ...] = tuple(
    Term(code, zh, en, f"{EU}data-theme/{code}") for code, zh, en in (
        ("AGRI", "农业渔业林业与食品", "Agriculture, fisheries, forestry and food"),
        ("ECON", "经济与财政", "Economy and finance"), ("EDUC", "教育文化与体育", "Education, culture and sport"),
        ("ENER", "能源", "Energy"), ("ENVI", "环境", "Environment"),
        ("GOVE", "政府与公共部门", "Government and public sector"),
        ("HEAL", "卫生健康", "Health"), ("INTR", "国际事务", "International issues"),
        ("JUST", "司法与公共安全", "Justice, legal system and public safety"),
        ("REGI", "地区与城市", "Regions and cities"), ("SOCI", "人口与社会", "Population and society"),
        ("TECH", "科学技术", "Science and technology"), ("TRAN", "交通", "Transport")))

THEMES = {t.code: t for t in (*PLAN_AREAS, *EU_THEMES)}

LICENCES: dict[str, Term] = {t.code: t for t in (
    Term("CC-BY-4.0", "署名 4.0 国际", "Creative Commons Attribution 4.0", f"{EU}licence/CC_BY_4_0"),
    Term("CC0-1.0", "CC0 公有领域贡献", "Creative Commons Zero 1.0", f"{EU}licence/CC0"),
    Term("CC-BY-SA-4.0", "署名-相同方式共享 4.0", "Creative Commons Attribution-ShareAlike 4.0",
         f"{EU}licence/CC_BYSA_4_0"),
    Term("ODC-BY-1.0", "开放数据共享署名许可 1.0", "Open Data Commons Attribution 1.0", f"{EU}licence/ODC_BY"),
    Term("CDPL", "成都市公共数据开放许可（示例）", "Chengdu public data licence (example)",
         "https://cityplus.dev/licence/chengdu-public-data"),
)}
OPEN_LICENCES = frozenset({"CC-BY-4.0", "CC0-1.0", "CC-BY-SA-4.0", "ODC-BY-1.0"})

# Update frequencies with the days after which a dataset is overdue ("updated on time" in the quality score).
FREQUENCIES: dict[str, tuple[Term, int | None]] = {t.code: (t, days) for t, days in (
    (Term("CONT", "实时", "Continuous", f"{EU}frequency/UPDATE_CONT"), 2),
    (Term("DAILY", "每日", "Daily", f"{EU}frequency/DAILY"), 2),
    (Term("WEEKLY", "每周", "Weekly", f"{EU}frequency/WEEKLY"), 8),
    (Term("MONTHLY", "每月", "Monthly", f"{EU}frequency/MONTHLY"), 32),
    (Term("QUARTERLY", "每季度", "Quarterly", f"{EU}frequency/QUARTERLY"), 93),
    (Term("ANNUAL", "每年", "Annual", f"{EU}frequency/ANNUAL"), 366),
    (Term("IRREG", "不定期", "Irregular", f"{EU}frequency/IRREG"), None),
)}

# 开放属性: what the public may see.
OPENING: dict[str, Term] = {t.code: t for t in (
    Term("open", "无条件开放", "Open without conditions"),
    Term("conditional", "有条件开放", "Open on conditions"),
    Term("closed", "不予开放", "Not open"),
)}
# 共享属性: what other departments may see.
SHARING: dict[str, Term] = {t.code: t for t in (
    Term("share", "无条件共享", "Shared without conditions"),
    Term("conditional", "有条件共享", "Shared on conditions"),
    Term("none", "不予共享", "Not shared"),
)}
GRADES: dict[int, Term] = {n: Term(str(n), zh, en) for n, zh, en in (
    (1, "一级（一般数据）", "Grade 1 (general)"), (2, "二级（较敏感数据）", "Grade 2 (somewhat sensitive)"),
    (3, "三级（敏感数据）", "Grade 3 (sensitive)"), (4, "四级（重要数据）", "Grade 4 (important)"))}

# Formats a DataStore can load, and those counted as open (non-proprietary, machine-readable).
TABULAR_FORMATS = ("CSV", "XLSX", "JSON", "GEOJSON")
OPEN_FORMATS = frozenset({"CSV", "JSON", "GEOJSON", "XML", "RDF", "API"})
MEDIA_TYPES = {"CSV": "text/csv", "XLSX": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
               "JSON": "application/json", "GEOJSON": "application/geo+json", "HTML": "text/html",
               "PDF": "application/pdf", "XML": "application/xml"}
