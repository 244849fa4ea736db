"""JSON-LD @context handling for the NGSI-LD broker: context resolution and NGSI-LD term expansion (GS CIM 009).

Only the part of JSON-LD 1.1 that NGSI-LD needs is implemented: context processing (terms, prefixes, @vocab,
@protected, @import, nested remote contexts) and IRI expansion/compaction of attribute names, entity types and
vocabulary values. Full JSON-LD expansion is deliberately not done: the broker stores entities in "term-expanded"
NGSI-LD form (attribute names and types as IRIs, core members such as `type`/`value` kept short). Scoped contexts
(a term's own @context) are kept in its definition but not applied: NGSI-LD payloads do not rely on them.

Rule for core attribute names: every attribute name is expanded, core ones included, so `location` is stored as
`https://uri.etsi.org/ngsi-ld/location` and compacts back to `location` under any context (the core is protected).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
NGSI_LD = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
JSONLD_CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
CORE_FILE = Path(__file__).parent / "data" / "ngsi-ld-core-context-v1.9.jsonld"
# Only real core-context URLs (unversioned or -v1.N) map to the built-in copy: the ETSI suite checks that e.g.
# ngsi-ld-core-context-non-existing.jsonld is reported as unretrievable.
_CORE_URL = re.compile(r"^https?://uri\.etsi\.org/ngsi-ld/v1/ngsi-ld-core-context(?:-v1\.\d+)?\.jsonld$")

_GEN_DELIMS = frozenset(":/?#[]@")
_CONTAINERS = frozenset({"@list", "@set", "@index", "@language", "@id", "@graph", "@type"})
_TERM_KEYS = frozenset({"@id", "@reverse", "@type", "@container", "@context", "@language", "@direction", "@nest",
                        "@index", "@prefix", "@protected"})
_CONTEXT_KEYS = frozenset({"@base", "@direction", "@import", "@language", "@propagate", "@protected", "@type",
                           "@version", "@vocab"})
_KEYWORD_FORM = re.compile(r"^@[a-zA-Z]+$")
_MAX_DEPTH = 16  # nested remote contexts; guards against include cycles and runaway chains
_TERM_CACHE_MAX = 50_000  # per-context memo of term lookups; attribute names come from clients, so bound it
_ACCEPT = "application/ld+json, application/json;q=0.9, */*;q=0.1"

# NGSI-LD members (GS CIM 009 §4.5) that are never attribute names and whose values are not vocabulary terms.
ENTITY_MEMBERS = frozenset({"id", "@id", "type", "@type", "scope", "@context", "createdAt", "modifiedAt",
                            "deletedAt", "expiresAt", "@none"})
ATTRIBUTE_MEMBERS = frozenset({"type", "@type", "value", "object", "objectList", "valueList", "languageMap", "vocab",
                               "json", "datasetId", "observedAt", "unitCode", "createdAt", "modifiedAt", "deletedAt",
                               "instanceId", "lang", "objectType", "previousValue", "previousObject",
                               "previousObjectList", "previousValueList", "previousLanguageMap", "previousVocab",
                               "previousJson", "entity", "@context"})
ATTRIBUTE_TYPES = frozenset({"Property", "Relationship", "GeoProperty", "LanguageProperty", "VocabProperty",
                             "JsonProperty", "ListProperty", "ListRelationship", "TemporalProperty"})
_VALUE_MEMBERS = frozenset({"value", "object", "objectList", "valueList", "languageMap", "vocab", "json"})
_VOCAB_MEMBERS = frozenset({"vocab", "previousVocab", "objectType"})


def is_core_url(url: str) -> bool:
    """Whether the URL names the NGSI-LD core context (any version served by the built-in copy)."""
    return _CORE_URL.match(url) is not None


class LdContextNotAvailable(Exception):
    """A remote @context could not be retrieved or is not a valid context document (503 LdContextNotAvailable)."""


class InvalidContext(Exception):
    """A malformed @context given by the client (400 BadRequestData)."""


class ContextRuleError(ValueError):
    """The request breaks the rules on where its @context may come from (GS CIM 009 §6.3.5)."""


class UnsupportedMediaType(ContextRuleError):
    """The request's Content-Type is not one NGSI-LD accepts for a body (415)."""


@dataclass(frozen=True, slots=True)
class _Term:
    iri: str
    type: str | None = None
    container: tuple[str, ...] = ()
    prefix: bool = False
    extra: tuple[tuple[str, str], ...] = ()  # other entries as canonical JSON, so definitions compare by value
    protected: bool = field(default=False, compare=False)  # JSON-LD compares definitions ignoring @protected


@dataclass
class _State:
    terms: dict[str, _Term] = field(default_factory=dict)
    vocab: str | None = None


class ActiveContext:
    """A processed @context with memoised term expansion and IRI compaction."""

    __slots__ = ("_terms", "_vocab", "_prefixes", "_inverse", "_expanded", "_compacted", "key")

    def __init__(self, state: _State) -> None:
        self._terms = dict(state.terms)
        self._vocab = state.vocab
        self._expanded: dict[str, str] = {}
        self._compacted: dict[str, str] = {}
        self._prefixes = sorted((t, d.iri) for t, d in self._terms.items() if d.prefix)
        inverse: dict[str, str] = {}
        for term, d in self._terms.items():
            best = inverse.get(d.iri)
            if not any(k == "@reverse" for k, _ in d.extra) and (best is None or (len(term), term) < (len(best), best)):
                inverse[d.iri] = term
        self._inverse = inverse
        canon = json.dumps([self._vocab, sorted((t, d.iri, d.type, d.container, d.prefix, d.extra)
                                                for t, d in self._terms.items())], separators=(",", ":"))
        self.key = hashlib.sha256(canon.encode()).hexdigest()[:32]

    def expand_term(self, term: str) -> str:
        """Expand an attribute or type name to its IRI (unknown terms go to the @vocab, i.e. DEFAULT_VOCAB)."""
        iri = self._expanded.get(term)
        if iri is None:
            iri = self._expand(term)
            if len(self._expanded) >= _TERM_CACHE_MAX:
                self._expanded.clear()
            self._expanded[term] = iri
        return iri

    expand_value_type = expand_term  # vocabulary values (@type: @vocab) expand exactly like terms

    def _expand(self, term: str) -> str:
        # Keyword aliases map to their keyword (core: "type" → "@type"); callers never pass them as attribute names.
        if term.startswith("@"):
            return term
        d = self._terms.get(term)
        if d is not None:
            return d.iri
        if ":" in term:
            prefix, suffix = term.split(":", 1)
            p = self._terms.get(prefix)
            if p is not None and p.prefix and prefix != "_" and not suffix.startswith("//"):
                return p.iri + suffix
            return term  # an absolute IRI (urn:, http:) or blank node
        return self._vocab + term if self._vocab is not None else term

    def compact_iri(self, iri: str) -> str:
        """Compact an IRI: exact term, else @vocab-relative name, else prefix:suffix, else the IRI unchanged."""
        term = self._compacted.get(iri)
        if term is None:
            term = self._compact(iri)
            if len(self._compacted) >= _TERM_CACHE_MAX:
                self._compacted.clear()
            self._compacted[iri] = term
        return term

    def _compact(self, iri: str) -> str:
        # Every candidate must expand back to the same IRI, which makes compaction the exact inverse of expansion.
        term = self._inverse.get(iri)
        if term is not None and self.expand_term(term) == iri:
            return term
        vocab = self._vocab
        if vocab and iri.startswith(vocab) and len(iri) > len(vocab):
            suffix = iri[len(vocab):]
            if suffix not in self._terms and self.expand_term(suffix) == iri:
                return suffix
        best: str | None = None
        for prefix, piri in self._prefixes:
            if iri.startswith(piri) and len(iri) > len(piri):
                cand = f"{prefix}:{iri[len(piri):]}"
                if cand not in self._terms and self.expand_term(cand) == iri and (
                        best is None or (len(cand), cand) < (len(best), best)):
                    best = cand
        return best if best is not None else iri

    def term_definition(self, term: str) -> dict[str, Any] | None:
        """The term's definition as a JSON-LD expanded term definition, or None when the term is not defined."""
        d = self._terms.get(term)
        if d is None:
            return None
        out: dict[str, Any] = {"@id": d.iri}
        if d.type is not None:
            out["@type"] = d.type
        if d.container:
            out["@container"] = list(d.container)
        out.update((k, json.loads(v)) for k, v in d.extra)
        return out | {"@protected": d.protected, "@prefix": d.prefix}

    @property
    def vocab(self) -> str | None:
        """The active @vocab mapping."""
        return self._vocab


def _canon_container(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(c, str) and c in _CONTAINERS for c in items):
        raise InvalidContext(f"invalid @container {value!r}")
    return tuple(sorted(items))


class _LocalProcessor:
    """Processes one local context object into a state (JSON-LD 1.1 Create Term Definition, trimmed)."""

    def __init__(self, state: _State, local: dict[str, Any]) -> None:
        self.state, self.local = state, local
        self.defined: dict[str, bool] = {}
        protected = local.get("@protected", False)
        if not isinstance(protected, bool):
            raise InvalidContext("@protected must be a boolean")
        self.protected = protected

    def run(self) -> None:
        if "@version" in self.local and self.local["@version"] != 1.1:
            raise InvalidContext("@version must be 1.1")
        if "@vocab" in self.local:
            vocab = self.local["@vocab"]
            if vocab is not None and not isinstance(vocab, str):
                raise InvalidContext("@vocab must be a string or null")
            self.state.vocab = None if vocab is None else self.expand(vocab)
        for term in self.local:
            if term not in _CONTEXT_KEYS:
                self.define(term)

    def expand(self, value: str) -> str:
        """IRI expansion inside a context: may define the local terms it depends on first."""
        if value.startswith("@"):
            return value
        if value in self.local and not self.defined.get(value):
            self.define(value)
        d = self.state.terms.get(value)
        if d is not None:
            return d.iri
        if ":" in value:
            prefix, suffix = value.split(":", 1)
            if prefix == "_" or suffix.startswith("//"):
                return value
            if prefix in self.local and not self.defined.get(prefix):
                self.define(prefix)
            p = self.state.terms.get(prefix)
            return p.iri + suffix if p is not None and p.prefix else value
        return self.state.vocab + value if self.state.vocab is not None else value

    def define(self, term: str) -> None:
        if term in self.defined:
            if not self.defined[term]:
                raise InvalidContext(f"cyclic IRI mapping for {term!r}")
            return
        self.defined[term] = False
        if term == "" or _KEYWORD_FORM.match(term):
            if term in _TERM_KEYS or term in ("@graph", "@value", "@list", "@set", "@included", "@json", "@none"):
                raise InvalidContext(f"keyword redefinition: {term!r}")
            self.defined[term] = True  # JSON-LD ignores terms that merely look like keywords
            return
        value = self.local[term]
        simple = isinstance(value, str)
        d = {"@id": value} if simple else value
        if value is not None and not isinstance(d, dict):
            raise InvalidContext(f"invalid term definition for {term!r}")
        new = None if value is None or d.get("@id", "") is None else self._build(term, d, simple)
        old = self.state.terms.get(term)
        if old is not None and old.protected and old != new:
            raise InvalidContext(f"protected term redefinition: {term!r}")
        if new is None:
            self.state.terms.pop(term, None)
        else:
            self.state.terms[term] = new
        self.defined[term] = True

    def _build(self, term: str, d: dict[str, Any], simple: bool) -> _Term:
        unknown = set(d) - _TERM_KEYS
        if unknown:
            raise InvalidContext(f"invalid term definition for {term!r}: {', '.join(sorted(unknown))}")
        ref = d.get("@reverse", d.get("@id"))
        if ref is not None and not isinstance(ref, str):
            raise InvalidContext(f"invalid IRI mapping for {term!r}")
        if ref is not None and ref != term:
            iri = self.expand(ref)
        elif ":" in term:
            iri = self.expand(term)
        elif self.state.vocab is not None:
            iri = self.state.vocab + term
        else:
            raise InvalidContext(f"no IRI mapping for {term!r}")
        if ":" not in iri and not iri.startswith("@"):
            raise InvalidContext(f"invalid IRI mapping for {term!r}: {iri!r}")
        typ = d.get("@type")
        if typ is not None:
            if not isinstance(typ, str) or (typ.startswith("@") and typ not in ("@id", "@vocab", "@json", "@none")):
                raise InvalidContext(f"invalid type mapping for {term!r}")
            typ = typ if typ.startswith("@") else self.expand(typ)
        container = _canon_container(d["@container"]) if d.get("@container") is not None else ()
        prefix = d.get("@prefix")
        if prefix is None:
            prefix = simple and ":" not in term and "/" not in term and (iri[-1] in _GEN_DELIMS or iri.startswith("_:"))
        elif not isinstance(prefix, bool):
            raise InvalidContext(f"@prefix of {term!r} must be a boolean")
        protected = d.get("@protected", self.protected)
        extra = tuple(sorted((k, json.dumps(d[k], sort_keys=True)) for k in d
                             if k in ("@context", "@language", "@direction", "@nest", "@index", "@reverse")))
        return _Term(iri, typ, container, bool(prefix), extra, bool(protected))


def _load_json_context(raw: bytes | str, origin: str) -> Any:
    """The @context value of a JSON-LD context document, or LdContextNotAvailable."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise LdContextNotAvailable(f"{origin}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or "@context" not in doc:
        raise LdContextNotAvailable(f"{origin}: not a JSON-LD context document (no top-level @context)")
    return doc["@context"]


@functools.cache
def _core_state() -> _State:
    """The built-in core context, processed once per process."""
    state = _State()
    _LocalProcessor(state, _load_json_context(CORE_FILE.read_bytes(), str(CORE_FILE))).run()
    return state


class ContextResolver:
    """Resolves request @contexts (URLs, inline objects, lists) to cached ActiveContexts; core always applied last."""

    def __init__(self, *, preload: Mapping[str, Path] = {}, allow_remote: bool = True, timeout: float = 3.0,
                 max_bytes: int = 1_000_000, cache_size: int = 256,
                 hosted: Callable[[str], dict[str, Any] | None] | None = None, failure_ttl: float = 10.0) -> None:
        self._preloaded: dict[str, Any] = {}
        for url, path in preload.items():
            try:  # read eagerly so a broken preload file fails at start-up, not on the first request
                self._preloaded[url] = _load_json_context(Path(path).read_bytes(), str(path))
            except (OSError, LdContextNotAvailable) as exc:
                raise ValueError(f"cannot preload @context {url} from {path}: {exc}") from exc
        self._allow_remote, self._timeout, self._max_bytes = allow_remote, timeout, max_bytes
        self._cache_size, self._hosted, self._failure_ttl = cache_size, hosted, failure_ttl
        self._docs: OrderedDict[str, tuple[float | None, Any]] = OrderedDict()  # url → (failure expiry, value/error)
        self._active: OrderedDict[str, ActiveContext] = OrderedDict()
        self._lock = threading.Lock()
        self._url_locks: dict[str, threading.Lock] = {}
        self.fetches = 0  # remote GETs made, for metrics and tests
        # When this process made its copy of each cached context (built-in and preloaded ones: at start-up).
        started = datetime.now(UTC)
        self._copied_at: dict[str, datetime] = {url: started for url in (CORE_CONTEXT_URL, *self._preloaded)}

    def resolve(self, context: str | dict[str, Any] | list[Any] | None) -> ActiveContext:
        """The ActiveContext for a request's @context (None → core only)."""
        key = context if isinstance(context, str) else json.dumps(context, sort_keys=True, separators=(",", ":"))
        with self._lock:
            hit = self._active.get(key)
            if hit is not None:
                self._active.move_to_end(key)
                return hit
        state = _State()
        if context is not None:
            self._process(state, context, ())
        self._apply_core(state)
        active = ActiveContext(state)
        with self._lock:
            self._active[key] = active
            if len(self._active) > self._cache_size:
                self._active.popitem(last=False)
        return active

    async def aresolve(self, context: str | dict[str, Any] | list[Any] | None) -> ActiveContext:
        """resolve() for async callers: a remote fetch runs in a worker thread, never on the event loop."""
        key = context if isinstance(context, str) else json.dumps(context, sort_keys=True, separators=(",", ":"))
        hit = self._active.get(key)
        return hit if hit is not None else await asyncio.to_thread(self.resolve, context)

    def core(self) -> ActiveContext:
        """The core-only ActiveContext."""
        return self.resolve(None)

    def cached_urls(self) -> list[str]:
        """URLs of documents fetched successfully and still cached (failures, briefly remembered, excluded)."""
        with self._lock:
            return [url for url, (expiry, _) in self._docs.items() if expiry is None]

    def copied_at(self, url: str) -> datetime | None:
        """When this process made its copy of a cached (built-in, preloaded or fetched) context."""
        return self._copied_at.get(url)

    def invalidate(self, url: str | None = None) -> None:
        """Forget cached documents (one URL or all) and all ActiveContexts, e.g. after a hosted context changed."""
        with self._lock:
            if url is None:
                self._docs.clear()
            else:
                self._docs.pop(url, None)
            self._active.clear()

    def _process(self, state: _State, context: Any, chain: tuple[str, ...]) -> None:
        for item in context if isinstance(context, list) else [context]:
            if item is None:
                if any(t.protected for t in state.terms.values()):
                    raise InvalidContext("invalid context nullification: protected terms are defined")
                state.terms.clear()
                state.vocab = None
            elif isinstance(item, str):
                self._include(state, item, chain)
            elif isinstance(item, dict):
                _LocalProcessor(state, self._with_import(item)).run()
            else:
                raise InvalidContext(f"invalid @context entry of type {type(item).__name__}")

    def _include(self, state: _State, url: str, chain: tuple[str, ...]) -> None:
        if _CORE_URL.match(url):
            self._apply_core(state)
            return
        if url in chain or len(chain) >= _MAX_DEPTH:
            raise LdContextNotAvailable(f"{url}: recursive or too deeply nested @context inclusion")
        try:
            self._process(state, self._document(url), (*chain, url))
        except InvalidContext as exc:  # a fetched document that is no valid context: the context is "not available"
            raise LdContextNotAvailable(f"{url}: invalid context: {exc}") from None

    def _with_import(self, local: dict[str, Any]) -> dict[str, Any]:
        if "@import" not in local:
            return local
        url = local["@import"]
        if not isinstance(url, str):
            raise InvalidContext("@import must be a URL")
        imported = self._document(url)
        if not isinstance(imported, dict) or "@import" in imported:
            raise InvalidContext(f"@import {url}: must be a single context object without @import")
        return {**imported, **{k: v for k, v in local.items() if k != "@import"}}

    @staticmethod
    def _apply_core(state: _State) -> None:
        core = _core_state()
        for term, d in core.terms.items():
            old = state.terms.get(term)
            if old is not None and old.protected and old != d:
                raise InvalidContext(f"protected term redefinition: {term!r}")
            state.terms[term] = d
        state.vocab = core.vocab

    def _document(self, url: str) -> Any:
        """The @context value of the document at url: preloaded, hosted, cached or fetched."""
        if url in self._preloaded:
            return self._preloaded[url]
        if self._hosted is not None:
            doc = self._hosted(url)
            if doc is not None:  # a stored JSON-LD document, or a bare context object
                return doc.get("@context", doc)
        if not self._allow_remote:
            raise LdContextNotAvailable(f"{url}: remote @context retrieval is disabled and it is not preloaded")
        with self._lock:
            cached = self._docs.get(url)
            if cached is not None and (cached[0] is None or cached[0] > time.monotonic()):
                self._docs.move_to_end(url)
                return self._cached(cached[1])
            url_lock = self._url_locks.setdefault(url, threading.Lock())
        with url_lock:  # one fetch per URL even when many requests need it at once
            with self._lock:
                cached = self._docs.get(url)
            if cached is not None and (cached[0] is None or cached[0] > time.monotonic()):
                return self._cached(cached[1])
            try:
                value: Any = self._fetch(url)
                entry: tuple[float | None, Any] = (None, value)
            except LdContextNotAvailable as exc:
                entry = (time.monotonic() + self._failure_ttl, exc)
            with self._lock:
                self._docs[url] = entry
                if entry[0] is None:
                    self._copied_at[url] = datetime.now(UTC)
                if len(self._docs) > self._cache_size:
                    self._docs.popitem(last=False)
                self._url_locks.pop(url, None)
        return self._cached(entry[1])

    @staticmethod
    def _cached(value: Any) -> Any:
        if isinstance(value, LdContextNotAvailable):
            raise LdContextNotAvailable(str(value))
        return value

    def _fetch(self, url: str) -> Any:
        if not url.startswith(("http://", "https://")):
            raise LdContextNotAvailable(f"{url}: not a dereferenceable http(s) URL")
        self.fetches += 1
        deadline = time.monotonic() + self._timeout
        body = bytearray()
        try:
            with httpx.Client(timeout=self._timeout, follow_redirects=True, max_redirects=5) as client, \
                    client.stream("GET", url, headers={"Accept": _ACCEPT}) as resp:
                if resp.status_code != 200:
                    raise LdContextNotAvailable(f"{url}: HTTP {resp.status_code}")
                length = resp.headers.get("content-length", "")
                if length.isdigit() and int(length) > self._max_bytes:
                    raise LdContextNotAvailable(f"{url}: larger than {self._max_bytes} bytes")
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise LdContextNotAvailable(f"{url}: larger than {self._max_bytes} bytes")
                    if time.monotonic() > deadline:  # httpx timeouts are per read; bound the whole transfer
                        raise LdContextNotAvailable(f"{url}: took longer than {self._timeout}s")
        except httpx.HTTPError as exc:
            raise LdContextNotAvailable(f"{url}: {type(exc).__name__}: {exc}") from None
        return _load_json_context(bytes(body), url)


def _is_instance(value: Any) -> bool:
    """Whether a dict is an attribute instance (normalized or concise form) rather than a JSON object value."""
    return isinstance(value, dict) and (value.get("type") in ATTRIBUTE_TYPES or not _VALUE_MEMBERS.isdisjoint(value))


def _is_attribute_list(value: list[Any]) -> bool:
    return bool(value) and all(_is_instance(v) for v in value)


def _walk_attr(value: Any, conv: Callable[[str], str]) -> Any:
    if isinstance(value, list):
        return [_walk_instance(v, conv) for v in value] if _is_attribute_list(value) else value
    return _walk_instance(value, conv) if _is_instance(value) else value


def _walk_instance(inst: dict[str, Any], conv: Callable[[str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in inst.items():
        if key in _VOCAB_MEMBERS:
            out[key] = [conv(v) if isinstance(v, str) else v for v in value] if isinstance(value, list) else \
                conv(value) if isinstance(value, str) else value
        elif key in ATTRIBUTE_MEMBERS:
            out[key] = value
        else:
            _put(out, conv(key), _walk_attr(value, conv))
    return out


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    # Two names for one IRI (e.g. `name` and its full IRI) become instances of one attribute, as in JSON-LD.
    if key in out:
        old = out[key]
        value = (old if isinstance(old, list) else [old]) + (value if isinstance(value, list) else [value])
    out[key] = value


def _walk_entity(entity: dict[str, Any], conv: Callable[[str], str], key_values: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entity.items():
        if key in ("type", "@type"):
            out[key] = [conv(t) if isinstance(t, str) else t for t in value] if isinstance(value, list) else \
                conv(value) if isinstance(value, str) else value
        elif key in ENTITY_MEMBERS:
            out[key] = value
        else:
            _put(out, conv(key), value if key_values else _walk_attr(value, conv))
    return out


def expand_entity(entity: dict[str, Any], ctx: ActiveContext, *, key_values: bool = False) -> dict[str, Any]:
    """Term-expand an entity (fragment): attribute names, sub-attribute names, types and `vocab` values."""
    return _walk_entity(entity, ctx.expand_term, key_values)


def compact_entity(entity: dict[str, Any], ctx: ActiveContext, *, key_values: bool = False) -> dict[str, Any]:
    """Inverse of expand_entity for the same context."""
    return _walk_entity(entity, ctx.compact_iri, key_values)


def expand_attribute(value: Any, ctx: ActiveContext) -> Any:
    """Term-expand one attribute's body (an instance or a list of instances): sub-attribute names, vocab values."""
    return _walk_attr(value, ctx.expand_term)


def compact_attribute(value: Any, ctx: ActiveContext) -> Any:
    """Inverse of expand_attribute."""
    return _walk_attr(value, ctx.compact_iri)


def parse_link_header(value: str) -> str | None:
    """The JSON-LD context URL of a Link header (rel=json-ld#context), None if absent; several → ContextRuleError."""
    found: list[str] = []
    # One match per link: <uri> then its parameters up to the next "<" outside a quoted string (URIs may hold commas).
    for m in re.finditer(r'<([^>]*)>((?:[^<"]|"(?:[^"\\]|\\.)*")*)', value):
        params: dict[str, str] = {}
        for p in re.finditer(r';\s*([A-Za-z0-9!#$&+\-.^_`|~*]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*))?', m.group(2)):
            params.setdefault(p.group(1).lower(), (p.group(2) or "").strip('"'))
        media = params.get("type", "application/ld+json").lower()
        if JSONLD_CONTEXT_REL in params.get("rel", "").split() and media == "application/ld+json":
            found.append(m.group(1).strip())
    if len(set(found)) > 1:
        raise ContextRuleError("more than one JSON-LD context Link header")
    return found[0] if found else None


def response_link_header(context_url: str) -> str:
    """The Link header value naming a response's @context."""
    return f'<{context_url}>; rel="{JSONLD_CONTEXT_REL}"; type="application/ld+json"'


def request_context(content_type: str | None, link_header: str | None, body: Any | None
                    ) -> tuple[str | list[Any] | dict[str, Any] | None, str]:
    """The request's @context and media type per GS CIM 009 §6.3.5.

    For an ld+json array body (batch) every element must carry @context; the common one is returned, or None when
    they differ (then resolve each element's own @context).
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    link = parse_link_header(link_header) if link_header else None
    if body is None:  # GET/DELETE: only the Link header counts
        return link, media
    if media in ("application/json", "application/merge-patch+json"):
        items = body if isinstance(body, list) else [body]
        if any(isinstance(i, dict) and "@context" in i for i in items):
            raise ContextRuleError(f"a {media} body must not contain @context; send it in a Link header "
                                   "or use Content-Type application/ld+json")
        return link, media
    if media == "application/ld+json":
        if link is not None:
            raise ContextRuleError("with Content-Type application/ld+json the @context must be in the body, "
                                   "not in a Link header")
        items = body if isinstance(body, list) else [body]
        if not all(isinstance(i, dict) and "@context" in i for i in items):
            raise ContextRuleError("an application/ld+json body must contain @context")
        contexts = [i["@context"] for i in items]
        if not contexts:
            return None, media
        return (contexts[0] if all(c == contexts[0] for c in contexts) else None), media
    raise UnsupportedMediaType(f"unsupported Content-Type {content_type!r}: use application/json "
                               "or application/ld+json")
