"""DIN (Table 4): target attention over the k most recent behaviours; its "GSU" is recency."""

from __future__ import annotations

from ..gsu import RecentGSU
from ..registry import BuildContext, LifelongModule, register


def build(ctx: BuildContext) -> RecentGSU:
    return RecentGSU()


register(LifelongModule(
    name="din", label="DIN",
    description="target attention over the most recent k behaviours",
    build=build,
))  # fmt: skip
