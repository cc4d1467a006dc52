"""A cls head that scores another metric than the CTC's (top-5 instead of top1_accuracy)."""

from harness import TaskHeadSpec, hookimpl


class TopFive:
    metric = "top5_accuracy"


@hookimpl
def harness_tasks():
    return [TaskHeadSpec(name="wrong-cls", task="cls", version="0.1", factory=lambda ctx: TopFive())]
