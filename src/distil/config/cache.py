"""The ``cache:`` section: where the teacher's outputs come from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from distil.config.base import Section
from distil.engine.teacher_outputs import CacheSettings


class CacheConfig(Section):
    """Where the teacher's outputs come from: exact cache, pre-drawn augmented views, or online forwards."""

    mode: Literal["auto", "exact", "views", "online"] = Field(
        "auto", description="auto: exact cache without augmentation, pre-drawn views with it (logit terms only), online otherwise"
    )
    views: int = Field(4, ge=1, description="augmented views pre-drawn per sample (FKD); the teacher runs once per view")
    top_k: int = Field(10, ge=1, description="teacher logits kept per view in fp16; the other classes share their residual mass")
    max_bytes: int = Field(4 * 1024**3, ge=0, description="the most a cache may take; larger caches fall back to the online teacher")
    dir: str | None = Field(None, description="where caches are stored (default $DISTIL_CACHE or ~/.cache/distil/teacher)")
    store: bool = Field(True, description="keep caches on disk, keyed by teacher weights, data and settings, to reuse across runs")

    def settings(self, seed: int) -> CacheSettings:
        """This section as the teacher-output cache takes it; views are drawn with the run's ``seed``."""
        return CacheSettings(mode=self.mode, views=self.views, top_k=self.top_k, max_bytes=self.max_bytes, dir=self.dir, store=self.store, seed=seed)
