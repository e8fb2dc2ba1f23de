"""The shared language of lq: partitions, key names, queries, codecs, settings, errors."""

__all__ = ["codec", "errors", "keys", "logfmt", "loops", "partition", "query", "settings"]
