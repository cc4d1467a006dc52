"""Plugin discovery and the registry of codecs and datasets.

Plugins come from entry points of the group `fcm_harness.plugins` (built-in and
third-party alike) or are passed in directly (tests, notebooks). A plugin that
fails to import or whose hook raises is recorded as broken and reported by
`harness plugins`; it only becomes an error when one of its codecs is selected
(by name: a broken plugin's name is the only name we know). Two codecs with one
name are an error that names both sources.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
import difflib
import importlib
from importlib import metadata
import os
from typing import Any

import pluggy

from harness import hookspecs
from harness.codec import INPUT_KINDS, CodecSpec
from harness.datasets import DatasetSpec
from harness.errors import PluginError, unknown_name
from harness.tasks import TaskHeadSpec


PLUGINS_ENV = "FCM_HARNESS_PLUGINS"


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin came from: entry point name, distribution and version."""

    plugin: str
    distribution: str
    version: str
    target: str

    def describe(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"{self.distribution}{version} ({self.target})"


@dataclass(frozen=True)
class BrokenPlugin:
    source: PluginSource
    error: str


@dataclass(frozen=True)
class Registered:
    spec: Any
    source: PluginSource


@dataclass(frozen=True)
class Conflict:
    """Two plugins provide one name: only that name (and, for a head, its task) is unusable."""

    kind: str  # "CodecSpec", "DatasetSpec", "TaskHeadSpec"
    name: str
    first: Registered
    second: Registered

    @property
    def tasks(self) -> set[str]:
        return {getattr(r.spec, "task", None) for r in (self.first, self.second)} - {None}

    def __str__(self) -> str:
        return (f"{self.kind} name '{self.name}' is provided twice: by {self.first.source.describe()} "
                f"and by {self.second.source.describe()}")


class Registry:
    """All codecs and datasets the installed (or given) plugins provide."""

    def __init__(self, extra_plugins: Iterable[Any] = (), entry_points: bool = True,
                 extra_source: str = "(given)") -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.sources: dict[str, PluginSource] = {}
        self.broken: list[BrokenPlugin] = []
        if entry_points:
            self._load_entry_points()
        for plugin in extra_plugins:
            name = getattr(plugin, "__name__", type(plugin).__name__)
            self._register(plugin, PluginSource(name, extra_source, "", name))
        self.codecs, self.codec_conflicts = self._collect("harness_codecs", CodecSpec, _check_codec)
        self.datasets, self.dataset_conflicts = self._collect("harness_datasets", DatasetSpec, None)
        self.heads, self.head_conflicts = self._collect("harness_tasks", TaskHeadSpec, None)

    # ------------------------------------------------------------ loading
    def _load_entry_points(self) -> None:
        for ep in sorted(metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist
            source = PluginSource(ep.name, dist.name if dist else "?", dist.version if dist else "?", ep.value)
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the harness down
                self.broken.append(BrokenPlugin(source, f"import failed: {type(exc).__name__}: {exc}"))
                continue
            self._register(plugin, source)

    def _register(self, plugin: Any, source: PluginSource) -> None:
        if source.plugin in self.sources:
            other = self.sources[source.plugin]
            self.broken.append(BrokenPlugin(source, f"plugin name '{source.plugin}' is already taken by "
                                                    f"{other.describe()}"))
            return
        try:
            self.pm.register(plugin, name=source.plugin)
        except Exception as exc:
            self.broken.append(BrokenPlugin(source, f"registration failed: {exc}"))
            return
        unknown = unknown_hooks(self.pm, plugin)
        if unknown:  # pluggy would silently never call a misspelled hook: the plugin would look empty
            self.pm.unregister(plugin)
            self.broken.append(BrokenPlugin(source, "; ".join(unknown)))
            return
        if not self.pm.get_hookcallers(plugin):  # e.g. its @hookimpl lost in an edit: its codecs would just vanish
            self.pm.unregister(plugin)
            where = getattr(plugin, "__file__", None) or source.target
            self.broken.append(BrokenPlugin(source, f"{where} implements no harness hook (no @hookimpl "
                                                    "function such as harness_codecs)"))
            return
        self.sources[source.plugin] = source

    def _collect(self, hook: str, kind: type, check) -> tuple[dict[str, Registered], list[Conflict]]:
        found: dict[str, Registered] = {}
        conflicts: list[Conflict] = []
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            source = self.sources[impl.plugin_name]
            try:
                specs = list(impl.function() or [])
                for spec in specs:
                    if not isinstance(spec, kind):
                        raise TypeError(f"{hook} returned {type(spec).__name__}, not {kind.__name__}")
                    if check:
                        check(spec)
            except Exception as exc:
                self.broken.append(BrokenPlugin(source, f"{hook} failed: {type(exc).__name__}: {exc}"))
                continue
            for spec in specs:
                if spec.name in found:
                    conflicts.append(Conflict(kind.__name__, spec.name, found[spec.name], Registered(spec, source)))
                    continue
                found[spec.name] = Registered(spec, source)
        return found, conflicts

    # ------------------------------------------------------------ look-ups
    def codec(self, name: str) -> Registered:
        for conflict in self.codec_conflicts:
            if conflict.name == name:
                raise PluginError(f"{conflict}; uninstall one of them")
        if name in self.codecs:
            return self.codecs[name]
        for broken in self.broken:
            if broken.source.plugin == name:
                raise PluginError(f"codec plugin '{name}' ({broken.source.describe()}) is broken: {broken.error}")
        # the codec may be in a plugin that could not register: say so instead of only "unknown"
        broken = "".join(f"; broken plugin {b.source.plugin}: {b.error}" for b in self.broken)
        raise PluginError(unknown_name("codec", name, self.codecs) + broken)

    def dataset(self, name: str) -> Registered:
        for conflict in self.dataset_conflicts:
            if conflict.name == name:
                raise PluginError(str(conflict))
        if name not in self.datasets:
            raise PluginError(unknown_name("dataset", name, self.datasets))
        return self.datasets[name]

    def head_for(self, task: str, name: str | None = None) -> Registered:
        """The task head for a CTC task: by name, or the only one registered for the task."""
        for conflict in self.head_conflicts:  # a clash of two other tasks' heads does not matter here
            if task in conflict.tasks and (name is None or name == conflict.name):
                raise PluginError(f"{conflict}; uninstall one of them")
        candidates = {n: r for n, r in self.heads.items() if r.spec.task == task}
        if name:
            if name not in candidates:
                raise PluginError(unknown_name(f"task head for '{task}'", name, candidates))
            return candidates[name]
        if not candidates:
            raise PluginError(f"no task head is registered for task '{task}'")
        if len(candidates) > 1:
            raise PluginError(f"several task heads for '{task}': {', '.join(sorted(candidates))}; choose one")
        return next(iter(candidates.values()))

    def locate_tool(self, name: str) -> str | None:
        return self.pm.hook.harness_locate_tool(name=name)


def unknown_hooks(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """'hook X in FILE is not a harness hook; did you mean Y?' for each @hookimpl with no hookspec."""
    known = [name for name in dir(hookspecs) if name.startswith("harness_")]
    where = getattr(plugin, "__file__", None) or getattr(plugin, "__name__", type(plugin).__name__)
    problems = []
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.spec is None:
            close = difflib.get_close_matches(caller.name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; harness hooks: {', '.join(known)}"
            problems.append(f"hook '{caller.name}' in {where} is not a harness hook{hint}")
    return problems


def _check_codec(spec: CodecSpec) -> None:
    if spec.input_kind not in INPUT_KINDS:
        raise ValueError(f"codec '{spec.name}': input_kind must be one of {INPUT_KINDS}, got {spec.input_kind!r}")
    if spec.input_kind != "feature" and not spec.family:
        raise ValueError(f"codec '{spec.name}': input {spec.input_kind} needs a family (whose CTC ranges apply)")
    if not spec.name or not spec.name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"codec name {spec.name!r} must be letters, digits, '-' or '_'")


_default: Registry | None = None


def default_registry() -> Registry:
    """The registry of installed plugins (built once per process).

    Besides entry points, modules named in $FCM_HARNESS_PLUGINS (comma
    separated, importable) are registered: a quick way to try a plugin before
    packaging it. A module that fails to import is reported as broken.
    """
    global _default
    if _default is None:
        extra = []
        broken = []
        for name in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
            try:
                extra.append(importlib.import_module(name))
            except Exception as exc:
                broken.append(BrokenPlugin(PluginSource(name, f"${PLUGINS_ENV}", "", name),
                                           f"import failed: {type(exc).__name__}: {exc}"))
        _default = Registry(extra_plugins=extra, extra_source=f"${PLUGINS_ENV}")
        _default.broken.extend(broken)
    return _default
