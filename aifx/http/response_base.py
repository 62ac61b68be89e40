"""The base of every response body: a closed schema (`extra="forbid"`), so an undocumented field fails its test."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
