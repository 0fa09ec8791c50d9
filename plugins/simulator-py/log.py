"""Logs as ferryd keeps them: one JSON object per line, on stderr.

Every line has `time`, `level`, `pid` and `msg`, and the fields given with
`extra={'fields': {...}}`. Python's own `logging` is routed here too (grpcio
logs through it), so nothing but JSON reaches stderr.
"""
import datetime
import json
import logging
import os
import sys


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            'time': datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(timespec='milliseconds').replace('+00:00', 'Z'),
            'level': record.levelname.lower(),
            'pid': os.getpid(),
            'msg': record.getMessage(),
        }
        entry.update(getattr(record, 'fields', {}))
        if record.exc_info:
            entry['err'] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(',', ':'))


def setup(level='INFO'):
    """Sends every logger's records to stderr as JSON lines; returns the driver's logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return logging.getLogger('simulator-py')
