"""Provides a task head named 'paper-cls' again: a clash that concerns the cls task only."""

from harness import TaskHeadSpec, hookimpl


@hookimpl
def harness_tasks():
    return [TaskHeadSpec(name="paper-cls", task="cls", version="9", factory=lambda ctx: None)]
