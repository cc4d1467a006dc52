"""The hooks a harness plugin may implement (pluggy).

A plugin is a module (or object) named by an entry point in the group
`fcm_harness.plugins` (or in $FCM_HARNESS_PLUGINS); it implements any of these
with `@harness.hookimpl`. Registration hooks collect from every plugin; look-ups
are `firstresult`. A function marked `@hookimpl` whose name is not one of these
makes its plugin broken (reported by `harness plugins`), never silently ignored.

When they are called: the registration hooks once per process that builds a
registry — the `harness` command, and also every worker process of a run or a
`verify` (workers rebuild codecs from their names). So keep them cheap and free
of side effects: no downloads, no model loading, no prints; defer heavy imports
to the factories.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from harness.codec import CodecSpec
    from harness.datasets import DatasetSpec
    from harness.tasks import TaskHeadSpec

PROJECT = "fcm_harness"
ENTRY_POINT_GROUP = "fcm_harness.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def harness_codecs() -> list[CodecSpec]:
    """Return the codecs this plugin provides (no parameters; called in the CLI and in workers).

    The harness checks each spec (name, input kind, family) and calls `spec.factory(options)`
    once per job with the run's `-o KEY=VALUE` options; see `harness.codec.Codec` for what the
    codec object must do and may do.

    Example::

        @hookimpl
        def harness_codecs():
            return [CodecSpec(name="mycodec", version="0.1", family="handcrafted",
                              input_kind="frame10", factory=MyCodec)]
    """


@hookspec
def harness_datasets() -> list[DatasetSpec]:
    """Return built-in datasets this plugin provides (selected with --dataset NAME).

    Called whenever a registry is built; `spec.prepare` runs only when the dataset is selected.

    Example::

        @hookimpl
        def harness_datasets():
            return [DatasetSpec(name="demo", description="synthetic CTC shapes",
                                prepare=make_demo)]
    """


@hookspec
def harness_tasks() -> list[TaskHeadSpec]:
    """Return task heads this plugin provides (one or more per CTC task).

    Called whenever a registry is built; `spec.factory(context)` runs in `harness evaluate`
    (and `run`), once per task. The head's `metric` must be the CTC task's `metric`.

    Example::

        @hookimpl
        def harness_tasks():
            return [TaskHeadSpec(name="dinov2-cls", task="cls", version="1.0", factory=make_head)]
    """


@hookspec(firstresult=True)
def harness_locate_tool(name: str) -> str | None:
    """Return the path of an external tool, or None to let other plugins answer.

    name: the tool asked for. Called by codec plugins that run external programs (in workers too).

    Tools are named like "vtm-encoder", "vtm-decoder", "vtm-cfg". The first
    non-None answer wins, so a site plugin can point the harness at its build.

    Example::

        @hookimpl
        def harness_locate_tool(name):
            return {"vtm-encoder": "/opt/vtm/bin/EncoderAppStatic"}.get(name)
    """
