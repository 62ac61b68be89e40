"""LOG_LEVEL and AIFX_LOG_FORMAT=json for our loggers and BentoML's, applied in every server process."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from aifx.serving import context

# Our code logs under bentoml.aifx.* (shown by BentoML's handler), aifx.* and experiments.* (root).
LOGGERS = ("bentoml", "aifx", "runners", "experiments")
ACCESS_LOGGER = "bentoml.access"
_PAIR = re.compile(r"(\w+)=([^,]*)")


class JsonLines(JsonFormatter):
    """One JSON object per line: time, level, logger, message, request_id (+ method, route, path, status, duration)."""

    def __init__(self) -> None:
        super().__init__(json_ensure_ascii=False)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        """The fields above instead of the library's defaults (BentoML's handler adds its own record attributes)."""
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.getMessage()
        log_data["request_id"] = context.current()
        if record.name == ACCESS_LOGGER:
            log_data.update(access_fields(record))
        if record.exc_info:
            log_data["exc_info"] = self.formatException(record.exc_info)

    def format(self, record: logging.LogRecord) -> str:
        """As the library, without its extra-attribute pass: BentoML's filter adds attributes no one asked for."""
        log_data: dict[str, Any] = {}
        self.add_fields(log_data, record, {})
        return self.serialize_log_record(log_data)


def access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """method, route, path, status and duration (ms) of BentoML's access line `addr (req) (resp) 1.234ms`."""
    args = record.args if isinstance(record.args, tuple) else ()
    if len(args) != 4:
        return {}
    request = dict(_PAIR.findall(str(args[1])))
    response = dict(_PAIR.findall(str(args[2])))
    # BentoML logs the route template (aifx/http/route_labels.py TemplatedPaths bounds metric labels); the raw path
    # is the one the request id middleware saw.
    route = request.get("path")
    status = response.get("status", "")
    return {
        "method": request.get("method"),
        "route": route,
        "path": context.current_path() or route,
        "status": int(status) if status.isdigit() else None,
        "duration": round(args[3], 3) if isinstance(args[3], int | float) else None,  # ms
    }


def configure(level: str | None, fmt: str) -> None:
    """Set our loggers' and BentoML's level (None: leave BentoML's) and the format of every handler."""
    if level is not None:
        number = logging.getLevelName(level.upper())
        for name in LOGGERS:
            logging.getLogger(name).setLevel(number)
        root = logging.getLogger()
        if number > root.level:  # above WARNING (error, critical): the libraries' lines too
            root.setLevel(number)
    json_lines = JsonLines() if fmt == "json" else None
    for name in ("", "bentoml", "uvicorn.error", "circus"):
        for handler in logging.getLogger(name).handlers:
            if json_lines is not None:
                handler.setFormatter(json_lines)
            elif type(handler.formatter) is logging.Formatter:  # BentoML's text lines, a date once a second
                handler.setFormatter(SecondDates.like(handler.formatter))


class SecondDates(logging.Formatter):
    """A logging.Formatter that formats a date format (whole seconds, as strftime) once a second, not per line."""

    _last: tuple[int, str, str] = (-1, "", "")

    @classmethod
    def like(cls, formatter: logging.Formatter) -> SecondDates:
        """This formatter with another's format, date format and style."""
        twin = cls.__new__(cls)
        twin.__dict__.update(formatter.__dict__)
        return twin

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """As logging.Formatter's; with a date format, the text of the record's second is reused within it."""
        if datefmt is None:  # the default format adds milliseconds
            return super().formatTime(record, datefmt)
        second = int(record.created)  # what the converter (localtime or gmtime) reads of it
        last = self._last
        if last[0] == second and last[1] == datefmt:
            return last[2]
        text = super().formatTime(record, datefmt)
        self._last = (second, datefmt, text)
        return text
