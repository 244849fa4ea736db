"""Module manifests and the registry that discovers them through the `cityplus.modules` entry points."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import APIRouter
    from sqlalchemy.orm import Session

    from cityplus.core.context import AppContext
    from cityplus.core.events import Handler

ENTRY_POINT_GROUP = "cityplus.modules"

ROLES = ("citizen", "enterprise", "department_staff", "department_admin", "platform_admin", "developer")


@dataclass(frozen=True)
class Scope:
    """A permission a route can require; granted to roles by default, and narrowed by API tokens."""

    name: str
    description: dict[str, str]
    roles: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = set(self.roles) - set(ROLES)
        if unknown:
            raise ValueError(f"scope {self.name}: unknown roles {sorted(unknown)}")


@dataclass(frozen=True)
class NavLink:
    """A link a module adds to the portal (home page service list and navigation)."""

    path: str
    title: dict[str, str]
    area: int | None = None  # plan area the service belongs to, for the home page


@dataclass(frozen=True)
class Module:
    """What a domain package contributes to the platform (its manifest)."""

    name: str
    title: dict[str, str]
    plan_tasks: tuple[int, ...] = ()
    scopes: tuple[Scope, ...] = ()
    routers: Sequence[Callable[[], APIRouter]] = ()  # native APIs, mounted under /api/v1
    standard_routers: Sequence[Callable[[], APIRouter]] = ()  # standard APIs at their own paths (/ngsi-ld/v1 …)
    page_routers: Sequence[Callable[[], APIRouter]] = ()
    templates_dir: Path | None = None
    migrations_dir: Path | None = None
    models: str | None = None  # dotted path of the module holding its tables, e.g. "cityplus.modules.plan.models"
    events: str | None = None  # dotted path of the module defining its event types (imported at start-up)
    cli: Callable[[], Any] | None = None  # returns a typer.Typer
    demo_loader: Callable[[Session, AppContext], None] | None = None
    event_handlers: Sequence[Handler] = ()
    nav: Sequence[NavLink] = ()
    usage: Callable[[Session], dict[str, int]] | None = None  # live usage figures for plan coverage
    start: Callable[[AppContext], Awaitable[None]] | None = None
    stop: Callable[[AppContext], Awaitable[None]] | None = None
    depends_on: tuple[str, ...] = ()


class RegistryError(Exception):
    """A module manifest is inconsistent with the others."""


@dataclass
class ModuleRegistry:
    """The modules of one application, in dependency order."""

    modules: list[Module] = field(default_factory=list)

    @classmethod
    def discover(cls, only: Iterable[str] | None = None) -> ModuleRegistry:
        """Load every module registered in the `cityplus.modules` entry-point group."""
        wanted = set(only) if only is not None else None
        found: list[Module] = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if wanted is not None and ep.name not in wanted:
                continue
            module = ep.load()
            if not isinstance(module, Module):
                raise RegistryError(f"entry point {ep.name} does not point at a Module")
            if module.name != ep.name:
                raise RegistryError(f"entry point {ep.name} loads module named {module.name}")
            found.append(module)
        return cls.from_modules(found)

    @classmethod
    def from_modules(cls, modules: Iterable[Module]) -> ModuleRegistry:
        by_name: dict[str, Module] = {}
        for m in modules:
            if m.name in by_name:
                raise RegistryError(f"module {m.name} registered twice")
            by_name[m.name] = m
        ordered: list[Module] = []
        visiting: set[str] = set()

        def visit(m: Module) -> None:
            if m in ordered:
                return
            if m.name in visiting:
                raise RegistryError(f"dependency cycle through {m.name}")
            visiting.add(m.name)
            for dep in m.depends_on:
                if dep not in by_name:
                    raise RegistryError(f"module {m.name} depends on missing module {dep}")
                visit(by_name[dep])
            visiting.discard(m.name)
            ordered.append(m)

        for m in sorted(by_name.values(), key=lambda m: m.name):
            visit(m)
        registry = cls(ordered)
        registry._check_scopes()
        return registry

    def _check_scopes(self) -> None:
        seen: dict[str, str] = {}
        for m in self.modules:
            for s in m.scopes:
                if s.name in seen:
                    raise RegistryError(f"scope {s.name} declared by {seen[s.name]} and {m.name}")
                seen[s.name] = m.name

    def get(self, name: str) -> Module:
        for m in self.modules:
            if m.name == name:
                return m
        raise KeyError(name)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.modules)

    def all_scopes(self) -> list[Scope]:
        from cityplus.core.identity.scopes import CORE_SCOPES

        return [*CORE_SCOPES, *(s for m in self.modules for s in m.scopes)]

    def modules_for_task(self, task: int) -> list[Module]:
        return [m for m in self.modules if task in m.plan_tasks]

    def load_event_types(self) -> None:
        """Import every module's event types, so a process can decode events before it publishes any."""
        import importlib

        importlib.import_module("cityplus.core.identity.events")
        for m in self.modules:
            if m.events:
                importlib.import_module(m.events)

    def migration_dirs(self) -> list[Path]:
        return [m.migrations_dir for m in self.modules if m.migrations_dir is not None]

    def template_dirs(self) -> list[Path]:
        return [m.templates_dir for m in self.modules if m.templates_dir is not None]
